"""yacs config keys of gcnet."""
from detectron2.config import CfgNode as CN

__all__ = ["add_gcnet_config"]


def add_gcnet_config(cfg: CN) -> None:
    """Add the MODEL.GCNET.* keys read by ``build_gcnet_resnet_backbone`` and
    ``build_gcnet_resnet_fpn_backbone``. The other backbone options (depth, ResNeXt groups,
    norm, DCN, stride_in_1x1) are detectron2's MODEL.RESNETS.* keys."""
    cfg.MODEL.GCNET = CN()
    # Stages with a GC block in every residual block; the paper uses c3-c5.
    cfg.MODEL.GCNET.STAGES = ["res3", "res4", "res5"]
    # Bottleneck ratio as a fraction of the channels: 1/16 ("r16") or 1/4 ("r4").
    cfg.MODEL.GCNET.RATIO = 1 / 16
    # "att" (attention pooling) or "avg"; Table 5(f).
    cfg.MODEL.GCNET.POOLING_TYPE = "att"
    # Any of "channel_add", "channel_mul"; Table 5(f).
    cfg.MODEL.GCNET.FUSION_TYPES = ["channel_add"]
    # "linear", "bottleneck", "bottleneck_relu" or "bottleneck_ln_relu"; Table 5(d).
    cfg.MODEL.GCNET.TRANSFORM = "bottleneck_ln_relu"
    # "after1x1" or "afterAdd"; Table 5(b).
    cfg.MODEL.GCNET.POSITION = "after1x1"
    # "", "nl", "snl" or "gc": one extra block before the last residual block of
    # EXTRA_BLOCK_STAGE; Table 5(a).
    cfg.MODEL.GCNET.EXTRA_BLOCK = ""
    cfg.MODEL.GCNET.EXTRA_BLOCK_STAGE = "res4"
