"""Mask R-CNN, ResNet-101-FPN, fixed BN, 1x."""

from .mask_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.depth = 101
train.init_checkpoint = "gcnet://ImageNetPretrained/torchvision/R-101"
