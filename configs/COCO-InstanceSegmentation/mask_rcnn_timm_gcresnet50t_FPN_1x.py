"""Mask R-CNN, timm's ImageNet-pretrained gcresnet50t (80.9% top-1)-FPN, fixed BN, 1x.

The recipe of ``mask_rcnn_R_50_FPN_1x.py``; the backbone loads its ImageNet weights from timm's
hub (cached by timm). Offline, give a local file of the timm model's state dict:

    python tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_timm_gcresnet50t_FPN_1x.py \\
        model.backbone.bottom_up.pretrained_file=/path/to/gcresnet50t.safetensors
"""

from ..common.models.mask_rcnn_timm_fpn import model
from .mask_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

train.init_checkpoint = ""  # the backbone loads timm's ImageNet weights itself
