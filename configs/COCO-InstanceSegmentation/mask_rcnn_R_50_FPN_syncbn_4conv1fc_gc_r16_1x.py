"""Mask R-CNN, ResNet-50-FPN, SyncBN everywhere, 4conv1fc box head, GC blocks (r16) in
c3-c5, 1x (Table 6(a))."""

from .mask_rcnn_R_50_FPN_syncbn_4conv1fc_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context = "gc"
model.backbone.bottom_up.gc.ratio = 1 / 16
