"""Converters from upstream checkpoint layouts to detectron2 parameter names.

Every converter consumes every upstream key or stops with the list of the keys it could not
place: a conversion is never silently partial.
"""
import re
from typing import Callable, Dict, Mapping

import numpy as np
import torch

__all__ = ["CONVERTERS", "convert_torchvision_resnet", "UnconvertedKeysError"]


class UnconvertedKeysError(ValueError):
    """Some upstream keys have no place in the converted checkpoint."""

    def __init__(self, converter: str, keys: Mapping[str, tuple]):
        listing = ", ".join(f"{k} {list(shape)}" for k, shape in sorted(keys.items()))
        super().__init__(f"{converter}: {len(keys)} upstream keys could not be converted: {listing}")
        self.keys = dict(keys)


# torchvision / mmcv ResNet(-V1b) and ResNeXt names -> detectron2 ResNet names.
_TORCHVISION_RESNET_RULES = [
    (r"^conv1\.weight$", "stem.conv1.weight"),
    (r"^bn1\.(weight|bias|running_mean|running_var)$", r"stem.conv1.norm.\1"),
    (r"^layer(\d)\.(\d+)\.conv(\d)\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (
        r"^layer(\d)\.(\d+)\.bn(\d)\.(weight|bias|running_mean|running_var)$",
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
    ),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (
        r"^layer(\d)\.(\d+)\.downsample\.1\.(weight|bias|running_mean|running_var)$",
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
    ),
    (r"^fc\.(weight|bias)$", r"linear.\1"),
]


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


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A torchvision-layout ResNet/ResNeXt ImageNet checkpoint (torchvision's, and
    OpenMMLab's ``open-mmlab://resnext*``) as a detectron2 checkpoint of its ``ResNet``
    (the layout of detectron2's ``ImageNetPretrained/torchvision/R-50.pkl``).

    The result is loaded with detectron2's name-matching heuristics, so it fits a ResNet
    at any depth in a model (``backbone.bottom_up.`` for FPN, ``backbone.`` otherwise).
    """
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    model = _rename("torchvision_resnet", state_dict, _TORCHVISION_RESNET_RULES)
    return {"model": model, "__author__": "torchvision", "matching_heuristics": True}


CONVERTERS: Dict[str, Callable[[Mapping[str, torch.Tensor]], dict]] = {
    "torchvision_resnet": convert_torchvision_resnet,
}
