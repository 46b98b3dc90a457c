"""Mask R-CNN, ResNeXt-101-32x4d-FPN, fixed BN, 1x."""

from .mask_rcnn_R_101_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.num_groups = 32
model.backbone.bottom_up.width_per_group = 4
train.init_checkpoint = "gcnet://ImageNetPretrained/open-mmlab/X-101-32x4d"
