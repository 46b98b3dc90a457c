"""Converters from upstream checkpoint layouts to gcnet's detectron2 models.

Every converter consumes every upstream key or stops with the list of the keys it could not
place (:class:`UnconvertedKeysError`): a conversion is never silently partial.
"""

from typing import Callable, Dict, Mapping

from .common import UnconvertedKeysError
from .imagenet import convert_deep_base_resnet, convert_resnet_v1c, convert_torchvision_resnet
from .mmdet import convert_mmdet, convert_mmdet_v1
from .mmseg import convert_mmseg

__all__ = ["CONVERTERS", "UnconvertedKeysError"]

CONVERTERS: Dict[str, Callable[[Mapping], dict]] = {
    "torchvision_resnet": convert_torchvision_resnet,
    "mmcv_resnet_v1c": convert_resnet_v1c,
    "deep_base_resnet": convert_deep_base_resnet,
    "mmdet": convert_mmdet,
    "mmdet_v1": convert_mmdet_v1,
    "mmseg": convert_mmseg,
}
