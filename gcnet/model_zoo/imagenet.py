"""ImageNet-pretrained backbones the paper's models start from, by ``gcnet://`` name.

detectron2's own handles cover the caffe-style MSRA ResNets and torchvision's ResNet-50
(``detectron2://ImageNetPretrained/torchvision/R-50.pkl``). The paper (Section 5.1) trained
on mmdetection with pytorch-style ImageNet weights; those detectron2 does not host are
listed here and converted on load.
"""
from dataclasses import dataclass
from typing import Dict

__all__ = ["CheckpointSource", "IMAGENET_MODELS"]


@dataclass(frozen=True)
class CheckpointSource:
    """An upstream checkpoint: where it is, its sha256 (full, or the prefix in its file name;
    empty when upstream publishes none), and the converter (a key of
    ``gcnet.model_zoo.converters.CONVERTERS``) that turns it into detectron2 names."""

    url: str
    sha256: str
    converter: str
    description: str = ""


IMAGENET_MODELS: Dict[str, CheckpointSource] = {
    "ImageNetPretrained/torchvision/R-50": CheckpointSource(
        url="https://download.pytorch.org/models/resnet50-19c8e357.pth",
        sha256="19c8e357",
        converter="torchvision_resnet",
        description="torchvision ResNet-50 (pytorch style, RGB); mmdetection's torchvision://resnet50",
    ),
    "ImageNetPretrained/torchvision/R-101": CheckpointSource(
        url="https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
        sha256="5d3b4d8f",
        converter="torchvision_resnet",
        description="torchvision ResNet-101 (pytorch style, RGB); mmdetection's torchvision://resnet101",
    ),
    "ImageNetPretrained/open-mmlab/R-50-V1c": CheckpointSource(
        url="https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
        sha256="2cccc1ad",
        converter="mmcv_resnet_v1c",
        description="ResNet-50-V1c (deep stem 32-32-64, RGB); mmsegmentation's open-mmlab://resnet50_v1c",
    ),
    "ImageNetPretrained/open-mmlab/R-101-V1c": CheckpointSource(
        url="https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
        sha256="e67eebb6",
        converter="mmcv_resnet_v1c",
        description="ResNet-101-V1c (deep stem 32-32-64, RGB); mmsegmentation's open-mmlab://resnet101_v1c",
    ),
    "ImageNetPretrained/mit/R-101-deepbase": CheckpointSource(
        url="http://sceneparsing.csail.mit.edu/model/pretrained_resnet/resnet101-imagenet.pth",
        sha256="",
        converter="deep_base_resnet",
        description="ResNet-101 with the deep stem 64-64-128 (RGB) that CCNet and the paper's "
        "Cityscapes models start from; no checksum is published for it",
    ),
    "ImageNetPretrained/open-mmlab/X-101-32x4d": CheckpointSource(
        url="https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth",
        sha256="a5af3160",
        converter="torchvision_resnet",
        description="ResNeXt-101-32x4d (pytorch style, RGB); mmdetection's open-mmlab://resnext101_32x4d",
    ),
}
