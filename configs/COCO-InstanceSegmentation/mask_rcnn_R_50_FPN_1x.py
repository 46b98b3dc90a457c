"""Mask R-CNN, ResNet-50-FPN, fixed BN, 1x: the baseline of Tables 6(a) and 7(a)."""

from ..common.coco_schedule import lr_multiplier_1x as lr_multiplier
from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_gcnet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
