"""Mask R-CNN, ResNet-50-FPN, fixed BN, 2x."""

from ..common.coco_schedule import lr_multiplier_2x as lr_multiplier
from .mask_rcnn_R_50_FPN_1x import dataloader, model, optimizer, train

train.max_iter = 180000
