"""Cascade Mask R-CNN, ResNeXt-101-32x4d-FPN, SyncBN in the backbone, 1x (Table 7(a))."""

from ..common.models.cascade_mask_rcnn_gcnet_fpn import model
from .mask_rcnn_X_101_32x4d_FPN_syncbn_1x import dataloader, lr_multiplier, optimizer, train
from .mask_rcnn_X_101_32x4d_FPN_syncbn_1x import model as _mask_rcnn

model.backbone = _mask_rcnn.backbone
