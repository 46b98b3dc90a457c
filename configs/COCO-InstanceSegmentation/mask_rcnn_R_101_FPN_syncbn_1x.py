"""Mask R-CNN, ResNet-101-FPN, SyncBN in the backbone, 1x."""

from .mask_rcnn_R_101_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.norm = "SyncBN"
