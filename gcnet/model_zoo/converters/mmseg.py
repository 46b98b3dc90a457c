"""mmsegmentation checkpoints of GCNet (ResNetV1c backbone, GCHead, FCN auxiliary head) as
``ContextSegmentor`` models."""

from typing import Mapping

from .common import prefix_rules, rename, upstream_state_dict
from .imagenet import RESNET_V1C_RULES

__all__ = ["convert_mmseg"]


def _conv_module_rules(upstream: str, target: str) -> list:
    """mmcv ConvModule (``conv`` + ``bn``) -> detectron2 Conv2d with ``norm``; ``upstream`` and
    ``target`` may use the named group ``i``."""
    return [
        (rf"^{upstream}\.conv\.weight$", rf"{target}.weight"),
        (rf"^{upstream}\.bn\.(?P<param>weight|bias|running_mean|running_var)$", rf"{target}.norm.\g<param>"),
    ]


_RULES = (
    prefix_rules(RESNET_V1C_RULES, "backbone.", "backbone.")
    + _conv_module_rules(r"decode_head\.convs\.(?P<i>\d)", r"sem_seg_head.convs.\g<i>")
    + _conv_module_rules(r"decode_head\.conv_cat", "sem_seg_head.conv_cat")
    + _conv_module_rules(r"auxiliary_head\.convs\.(?P<i>\d)", r"auxiliary_head.convs.\g<i>")
    + [
        (r"^decode_head\.gc_block\.(.+)$", r"sem_seg_head.context.\1"),
        (r"^decode_head\.conv_seg\.(weight|bias)$", r"sem_seg_head.predictor.\1"),
        (r"^auxiliary_head\.conv_seg\.(weight|bias)$", r"auxiliary_head.predictor.\1"),
    ]
)


def convert_mmseg(checkpoint: Mapping) -> dict:
    """An mmsegmentation GCNet checkpoint (``EncoderDecoder`` with ``GCHead`` and ``FCNHead``)."""
    model = rename("mmseg", upstream_state_dict(checkpoint), _RULES)
    return {"model": model, "__author__": "mmsegmentation", "matching_heuristics": False}
