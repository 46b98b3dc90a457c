"""Mask R-CNN, ResNet-50-FPN, fixed BN, GC blocks (r16) in c3-c5, 2x (Table 6(b))."""

from ..common.coco_schedule import lr_multiplier_2x as lr_multiplier
from .mask_rcnn_R_50_FPN_gc_r16_1x import dataloader, model, optimizer, train

train.max_iter = 180000
