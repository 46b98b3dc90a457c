"""mmsegmentation's gcnet_r101-d8_512x512_20k_voc12aug: ResNet-101-V1c."""

from .mmseg_gcnet_R_50_D8_512x512_20k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 101
train.init_checkpoint = "gcnet://ImageNetPretrained/open-mmlab/R-101-V1c"
