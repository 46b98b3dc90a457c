from .blocks import CONTEXT_POSITIONS, GCBasicBlock, GCBottleneckBlock, frozen_conv_source
from .fpn import build_gcnet_resnet_fpn_backbone
from .resnet import (
    GC_STAGES,
    STAGE_NAMES,
    build_gcnet_resnet,
    build_gcnet_resnet_backbone,
    gcnet_resnet_defaults,
    make_gcnet_resnet_stages,
)
from .timm_backbone import TimmBackbone, add_timm_backbone_config, build_timm_backbone, build_timm_fpn_backbone
