from .blocks import EXTRA_BLOCK_TYPES, GC_POSITIONS, GCBasicBlock, GCBottleneckBlock
from .fpn import build_gcnet_resnet_fpn_backbone
from .resnet import (
    DEFAULT_GC,
    STAGE_NAMES,
    build_gcnet_resnet,
    build_gcnet_resnet_backbone,
    make_gcnet_resnet_stages,
)
from .timm_backbone import TimmBackbone, add_timm_backbone_config, build_timm_backbone, build_timm_fpn_backbone
