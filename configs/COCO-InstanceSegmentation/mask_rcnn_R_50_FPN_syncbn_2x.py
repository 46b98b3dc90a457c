"""Mask R-CNN, ResNet-50-FPN, SyncBN in the backbone, 2x (Table 6(b))."""

from ..common.coco_schedule import lr_multiplier_2x as lr_multiplier
from .mask_rcnn_R_50_FPN_syncbn_1x import dataloader, model, optimizer, train

train.max_iter = 180000
