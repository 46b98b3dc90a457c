"""Mask R-CNN, ResNeXt-101-32x4d-FPN, SyncBN in the backbone, 1x."""

from .mask_rcnn_X_101_32x4d_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.norm = "SyncBN"
