"""GC-ResNet-FPN for yacs configs. LazyConfigs use detectron2's ``FPN`` directly, with
:func:`build_gcnet_resnet` as its ``bottom_up`` (see ``configs/common/models/``)."""

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ..norm import resolve_norm
from .resnet import build_gcnet_resnet

__all__ = ["build_fpn", "build_gcnet_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_gcnet_resnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """GC-ResNet (MODEL.RESNETS.*, MODEL.GCNET.*) with detectron2's FPN (MODEL.FPN.*) on top,
    as detectron2's ``build_resnet_fpn_backbone``."""
    return build_fpn(cfg, build_gcnet_resnet(cfg, input_shape))


def build_fpn(cfg: CfgNode, bottom_up) -> FPN:
    """detectron2's FPN (MODEL.FPN.*, with a max-pooled P6) on ``bottom_up``."""
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=resolve_norm(cfg.MODEL.FPN.NORM),
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
