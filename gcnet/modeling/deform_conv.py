"""Deformable convolution on ``torchvision.ops.deform_conv2d``.

detectron2's ``DeformConv`` has no CPU backward; torchvision's operator has forward and
backward on CPU and GPU, and takes the DCNv2 modulation mask.
"""

from typing import Optional

import torch
from torch import nn
from torchvision.ops import DeformConv2d as _TorchvisionDeformConv2d

__all__ = ["DeformConv2d", "split_offset_mask"]


class DeformConv2d(_TorchvisionDeformConv2d):
    """torchvision's ``DeformConv2d`` with detectron2's optional ``norm`` after the conv
    (so that parameters are named like detectron2's ``DeformConv``: ``weight``,
    ``norm.*``).

    ``forward(x, offset, mask=None)``: ``offset`` has 2 * deformable_groups * k * k channels
    ((dy, dx) per kernel position, the layout of detectron2, mmcv and the original DCN);
    ``mask`` (DCNv2) has deformable_groups * k * k channels with values in [0, 1].
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = super().forward(x, offset, mask)
        return self.norm(out) if self.norm is not None else out


def split_offset_mask(offset_mask: torch.Tensor):
    """Split the output of a DCNv2 offset conv (3 * G * k * k channels) into the offsets
    (the first two thirds) and the sigmoid modulation mask (the last third), as detectron2
    and mmcv do."""
    split = offset_mask.shape[1] // 3 * 2
    return offset_mask[:, :split], offset_mask[:, split:].sigmoid()
