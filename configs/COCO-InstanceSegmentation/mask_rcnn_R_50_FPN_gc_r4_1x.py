"""Mask R-CNN, ResNet-50-FPN, fixed BN, GC blocks (r4) in c3-c5, 1x."""

from .mask_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context = "gc"
model.backbone.bottom_up.gc.ratio = 1 / 4
