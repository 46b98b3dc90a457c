"""Mask R-CNN, timm's ImageNet-pretrained gcresnext50ts (80.6% top-1, SiLU)-FPN, fixed BN, 1x."""

from .mask_rcnn_timm_gcresnet50t_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.model_name = "gcresnext50ts"
