"""Mask R-CNN with FPN on a (GC-)ResNet, as the paper's COCO models (Section 5.1).

detectron2's Mask R-CNN FPN (2fc box head, aligned RoIAlign) with the backbone built by
``gcnet.modeling.build_gcnet_resnet``: ResNet-50, fixed BN, stages c1-c2 frozen, no GC block.
The paper's models start from pytorch-style ImageNet weights (stride in the 3x3 conv, RGB
input normalised by the ImageNet mean/std); model configs set depth, norm, GC and DCN.
"""
from detectron2.config import LazyCall as L

from gcnet.engine.config import get_detectron2_config
from gcnet.modeling import build_gcnet_resnet

model = get_detectron2_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(build_gcnet_resnet)(
    depth=50,
    num_groups=1,
    width_per_group=64,
    norm="FrozenBN",
    stride_in_1x1=False,
    freeze_at=2,
    out_features=["res2", "res3", "res4", "res5"],
    gc_stages=[],
    gc=dict(
        ratio=1 / 16,
        pooling_type="att",
        fusion_types=["channel_add"],
        transform="bottleneck_ln_relu",
    ),
    gc_position="after1x1",
    deform_stages=[],
    deform_modulated=False,
    deform_num_groups=1,
    extra_block=None,  # "nl", "snl" or "gc": Table 5(a)
    extra_block_stage="res4",
    nl=dict(mode="embedded_gaussian", reduction=2, use_scale=True),  # an "nl" extra block
)
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
