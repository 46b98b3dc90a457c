"""Mask R-CNN, ResNet-50-FPN, SyncBN in backbone, FPN and heads, 4conv1fc box head, 1x
(Table 6(a))."""

from ..common.models.mask_rcnn_gcnet_fpn_syncbn_4conv1fc import model
from .mask_rcnn_R_50_FPN_syncbn_1x import dataloader, lr_multiplier, optimizer, train
