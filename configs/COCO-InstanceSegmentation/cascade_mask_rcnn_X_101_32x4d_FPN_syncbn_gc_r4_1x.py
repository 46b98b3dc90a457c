"""Cascade Mask R-CNN, ResNeXt-101-32x4d-FPN, SyncBN, GC blocks (r4) in c3-c5, 1x
(Table 7(a))."""

from .cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context = "gc"
model.backbone.bottom_up.gc.ratio = 1 / 4
