"""The deep ResNet stem of the segmentation backbones (Section 5.4)."""

from typing import Sequence

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F

from detectron2.layers import CNNBlockBase, Conv2d

from ..norm import get_norm

__all__ = ["DeepStem"]


class DeepStem(CNNBlockBase):
    """Three 3x3 convs (the first with stride 2), each with norm and ReLU, then a 3x3 max
    pool with stride 2, in place of the 7x7 conv of the basic stem.

    ``channels`` is (64, 64, 128) for the ImageNet ResNet-101 of the paper's Cityscapes
    models (CCNet's "deep base") and (32, 32, 64) for mmsegmentation's ResNetV1c.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 32, 64), norm="BN"):
        if len(channels) != 3:
            raise ValueError(f"stem_channels must be 3 ints for the deep stem, got {list(channels)}")
        super().__init__(in_channels, channels[-1], 4)
        for idx, (c_in, c_out) in enumerate(zip([in_channels, *channels[:2]], channels), start=1):
            conv = Conv2d(
                c_in,
                c_out,
                kernel_size=3,
                stride=2 if idx == 1 else 1,
                padding=1,
                bias=False,
                norm=get_norm(norm, c_out),
            )
            weight_init.c2_msra_fill(conv)
            self.add_module(f"conv{idx}", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.relu_(conv(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
