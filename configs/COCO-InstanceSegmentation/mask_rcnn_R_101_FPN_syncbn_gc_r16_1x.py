"""Mask R-CNN, ResNet-101-FPN, SyncBN in the backbone, GC blocks (r16) in c3-c5, 1x."""

from .mask_rcnn_R_101_FPN_syncbn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context = "gc"
model.backbone.bottom_up.gc.ratio = 1 / 16
