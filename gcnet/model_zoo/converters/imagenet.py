"""ImageNet backbones (torchvision, mmcv ResNetV1c, MIT's deep-base ResNet) converted to
detectron2 ``ResNet`` names, to be loaded with detectron2's name-matching heuristics."""

from typing import Mapping

import torch

from .common import BN, rename, upstream_state_dict

__all__ = [
    "RESNET_RULES",
    "RESNET_V1C_RULES",
    "convert_deep_base_resnet",
    "convert_resnet_v1c",
    "convert_torchvision_resnet",
]


# Residual stages of torchvision-layout ResNets -> detectron2 ResNet names.
_STAGE_RULES = [
    (r"^layer(\d)\.(\d+)\.conv(\d)\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (rf"^layer(\d)\.(\d+)\.bn(\d)\.{BN}$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.weight$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (rf"^layer(\d)\.(\d+)\.downsample\.1\.{BN}$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
]
_CLASSIFIER_RULES = [(r"^fc\.(weight|bias)$", r"linear.\1")]
# torchvision / mmcv ResNet(-V1b) and ResNeXt (one 7x7 stem conv), without the classifier.
RESNET_RULES = [
    (r"^conv1\.weight$", "stem.conv1.weight"),
    (rf"^bn1\.{BN}$", r"stem.conv1.norm.\1"),
] + _STAGE_RULES
# mmcv ResNetV1c: the deep stem as a Sequential (conv, bn, relu) x 3.
RESNET_V1C_RULES = [
    (r"^stem\.(0|3|6)\.weight$", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.weight"),
    (rf"^stem\.(1|4|7)\.{BN}$", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.norm.{m[2]}"),
] + _STAGE_RULES
# The "deep base" ImageNet ResNets of MIT's scene parsing code (used by CCNet and the paper's
# Cityscapes models): stem convs conv1-conv3 with bn1-bn3.
_DEEP_BASE_RULES = [
    (r"^conv([123])\.weight$", r"stem.conv\1.weight"),
    (rf"^bn([123])\.{BN}$", r"stem.conv\1.norm.\2"),
] + _STAGE_RULES


def _imagenet_checkpoint(name: str, rules: list, author: str, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A converted ImageNet backbone, loaded with detectron2's name-matching heuristics so
    that it fits a ResNet at any depth in a model (``backbone.bottom_up.`` for FPN, ...)."""
    model = rename(name, upstream_state_dict(state_dict), rules + _CLASSIFIER_RULES)
    return {"model": model, "__author__": author, "matching_heuristics": True}


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A torchvision-layout ResNet/ResNeXt (torchvision's, and OpenMMLab's
    ``open-mmlab://resnext*``) in the layout of detectron2's
    ``ImageNetPretrained/torchvision/R-50.pkl``."""
    return _imagenet_checkpoint("torchvision_resnet", RESNET_RULES, "torchvision", state_dict)


def convert_resnet_v1c(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """mmcv's ResNetV1c (``open-mmlab://resnet{50,101}_v1c``, deep stem 32-32-64), for
    ``build_gcnet_resnet(stem="deep")``."""
    return _imagenet_checkpoint("mmcv_resnet_v1c", RESNET_V1C_RULES, "open-mmlab", state_dict)


def convert_deep_base_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The "deep base" ResNet of MIT's scene parsing code (deep stem 64-64-128), for
    ``build_gcnet_resnet(stem="deep", stem_channels=(64, 64, 128))``."""
    return _imagenet_checkpoint("deep_base_resnet", _DEEP_BASE_RULES, "mit-csail", state_dict)
