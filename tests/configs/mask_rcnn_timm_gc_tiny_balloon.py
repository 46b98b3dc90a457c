"""The tiny balloon model of the tools' tests (``mask_rcnn_R_18_FPN_gc_tiny_balloon.py``) on
timm's ``gcresnet50t`` (``configs/common/models/mask_rcnn_timm_fpn.py``) from random init:
the training test of ``TimmBackbone``."""

from ...configs.common.models.mask_rcnn_timm_fpn import model as timm_model
from .mask_rcnn_R_18_FPN_gc_tiny_balloon import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = timm_model.backbone.bottom_up
model.backbone.bottom_up.pretrained = False
