"""Converters from upstream checkpoint layouts to detectron2 parameter names.

Every converter consumes every upstream key or stops with the list of the keys it could not
place: a conversion is never silently partial.
"""
import re
from typing import Callable, Dict, Mapping

import numpy as np
import torch

__all__ = [
    "CONVERTERS",
    "UnconvertedKeysError",
    "convert_deep_base_resnet",
    "convert_resnet_v1c",
    "convert_torchvision_resnet",
]


class UnconvertedKeysError(ValueError):
    """Some upstream keys have no place in the converted checkpoint."""

    def __init__(self, converter: str, keys: Mapping[str, tuple]):
        listing = ", ".join(f"{k} {list(shape)}" for k, shape in sorted(keys.items()))
        super().__init__(f"{converter}: {len(keys)} upstream keys could not be converted: {listing}")
        self.keys = dict(keys)


_BN = r"(weight|bias|running_mean|running_var)"
# Residual stages and classifier of torchvision-layout ResNets -> detectron2 ResNet names.
_STAGE_RULES = [
    (r"^layer(\d)\.(\d+)\.conv(\d)\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (rf"^layer(\d)\.(\d+)\.bn(\d)\.{_BN}$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (rf"^layer(\d)\.(\d+)\.downsample\.1\.{_BN}$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
    (r"^fc\.(weight|bias)$", r"linear.\1"),
]
# torchvision / mmcv ResNet(-V1b) and ResNeXt: one 7x7 stem conv.
_TORCHVISION_RESNET_RULES = [
    (r"^conv1\.weight$", "stem.conv1.weight"),
    (rf"^bn1\.{_BN}$", r"stem.conv1.norm.\1"),
] + _STAGE_RULES
# mmcv ResNetV1c: the deep stem as a Sequential (conv, bn, relu) x 3.
_RESNET_V1C_RULES = [
    (r"^stem\.(0|3|6)\.weight$", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.weight"),
    (rf"^stem\.(1|4|7)\.{_BN}$", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.norm.{m[2]}"),
] + _STAGE_RULES
# The "deep base" ImageNet ResNets of MIT's scene parsing code (used by CCNet and the paper's
# Cityscapes models): stem convs conv1-conv3 with bn1-bn3.
_DEEP_BASE_RULES = [
    (r"^conv([123])\.weight$", r"stem.conv\1.weight"),
    (rf"^bn([123])\.{_BN}$", r"stem.conv\1.norm.\2"),
] + _STAGE_RULES


def _rename(name: str, state_dict: Mapping[str, torch.Tensor], rules) -> Dict[str, np.ndarray]:
    converted, unmatched = {}, {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):  # a BatchNorm step counter, not a weight
            continue
        for pattern, target in rules:
            match = re.match(pattern, key)
            if match:
                new_key = target(match) if callable(target) else match.expand(target)
                converted[new_key] = value.detach().cpu().numpy()
                break
        else:
            unmatched[key] = tuple(value.shape)
    if unmatched:
        raise UnconvertedKeysError(name, unmatched)
    return converted


def _imagenet_checkpoint(name: str, rules, author: str, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A converted ImageNet backbone, loaded with detectron2's name-matching heuristics so
    that it fits a ResNet at any depth in a model (``backbone.bottom_up.`` for FPN, ...)."""
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    return {"model": _rename(name, state_dict, rules), "__author__": author, "matching_heuristics": True}


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A torchvision-layout ResNet/ResNeXt (torchvision's, and OpenMMLab's
    ``open-mmlab://resnext*``) in the layout of detectron2's
    ``ImageNetPretrained/torchvision/R-50.pkl``."""
    return _imagenet_checkpoint("torchvision_resnet", _TORCHVISION_RESNET_RULES, "torchvision", state_dict)


def convert_resnet_v1c(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """mmcv's ResNetV1c (``open-mmlab://resnet{50,101}_v1c``, deep stem 32-32-64), for
    ``build_gcnet_resnet(stem="deep")``."""
    return _imagenet_checkpoint("mmcv_resnet_v1c", _RESNET_V1C_RULES, "open-mmlab", state_dict)


def convert_deep_base_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The "deep base" ResNet of MIT's scene parsing code (deep stem 64-64-128), for
    ``build_gcnet_resnet(stem="deep", stem_channels=(64, 64, 128))``."""
    return _imagenet_checkpoint("deep_base_resnet", _DEEP_BASE_RULES, "mit-csail", state_dict)


CONVERTERS: Dict[str, Callable[[Mapping[str, torch.Tensor]], dict]] = {
    "torchvision_resnet": convert_torchvision_resnet,
    "mmcv_resnet_v1c": convert_resnet_v1c,
    "deep_base_resnet": convert_deep_base_resnet,
}
