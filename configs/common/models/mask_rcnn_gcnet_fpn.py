"""Mask R-CNN with FPN on a (GC-)ResNet, as the paper's COCO models (Section 5.1).

detectron2's Mask R-CNN FPN (2fc box head, aligned RoIAlign) with the backbone built by
``gcnet.modeling.build_gcnet_resnet``: every option of it at its default (ResNet-50, fixed BN,
no GC block; the GC block's options those of ``gcnet.layers.ContextBlock``, r16), but for stages
c1-c2 frozen. The paper's models start from pytorch-style ImageNet weights (stride in the 3x3
conv, RGB input normalised by the ImageNet mean/std); model configs set depth, norm, GC and DCN.
"""

from detectron2.config import LazyCall as L

from gcnet.engine.config import get_detectron2_config
from gcnet.modeling import build_gcnet_resnet, gcnet_resnet_defaults

model = get_detectron2_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(build_gcnet_resnet)(**gcnet_resnet_defaults())
model.backbone.bottom_up.freeze_at = 2
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
