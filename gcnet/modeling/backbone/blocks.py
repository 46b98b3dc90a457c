"""Residual blocks of GC-ResNet/ResNeXt.

detectron2's ``BasicBlock`` and ``BottleneckBlock`` (same parameter names, so detectron2 and
converted ImageNet checkpoints load unchanged), extended with

* a GC block (``context_block``, the reference implementation's name) at one of the
  positions of Table 5(b): "after1x1", after the last conv + norm of the residual branch
  and before the residual add (the paper's default); or "afterAdd", after the residual add
  and ReLU;
* an optional extra context module (``extra_context``) applied to the block's output: the
  one NL / SNL / GC block that Table 5(a) inserts between two residual blocks;
* for bottlenecks, an optional deformable 3x3 conv (``conv2_offset`` + ``conv2``, DCNv1 or
  DCNv2) that runs forward and backward on CPU and GPU.
"""
from typing import Mapping, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

from gcnet.layers import AffineSource, ContextBlock, NonLocalBlock, SimplifiedNonLocalBlock

from ..deform_conv import DeformConv2d, split_offset_mask
from ..norm import get_norm, resolve_norm

__all__ = [
    "GCBasicBlock",
    "GCBottleneckBlock",
    "GC_POSITIONS",
    "EXTRA_BLOCK_TYPES",
    "DEFAULT_NL",
    "build_extra_block",
]

GC_POSITIONS = ("after1x1", "afterAdd")
EXTRA_BLOCK_TYPES = ("nl", "snl", "gc")


# The extra NL block of Table 5(a): embedded Gaussian with the scaled dot product of the
# reference implementation.
DEFAULT_NL = dict(mode="embedded_gaussian", reduction=2, use_scale=True)


def build_extra_block(kind: str, channels: int, gc: Mapping, nl: Optional[Mapping] = None) -> nn.Module:
    """The single context block of Table 5(a): "nl" (a NonLocalBlock with the ``nl`` options
    over :data:`DEFAULT_NL`; the instantiations of Tables 1-2), "snl" or "gc" (a ContextBlock
    with the ``gc`` options)."""
    if kind == "nl":
        return NonLocalBlock(channels, **dict(DEFAULT_NL, **(nl or {})))
    if kind == "snl":
        return SimplifiedNonLocalBlock(channels)
    if kind == "gc":
        return ContextBlock(channels, **gc)
    raise ValueError(f"extra_block must be one of {EXTRA_BLOCK_TYPES} or None, got {kind!r}")


class _GlobalContextMixin:
    """Holds the context modules of a residual block and applies them around its residual add."""

    def _init_context(
        self,
        channels: int,
        gc: Optional[Mapping],
        gc_position: str,
        extra_block: Optional[str],
        extra_gc: Optional[Mapping],
        extra_nl: Optional[Mapping],
    ) -> None:
        if gc_position not in GC_POSITIONS:
            raise ValueError(f"gc_position must be one of {GC_POSITIONS}, got {gc_position!r}")
        self.context_block = ContextBlock(channels, **gc) if gc is not None else None
        self.context_position = gc_position
        self.extra_context = (
            build_extra_block(extra_block, channels, extra_gc or {}, extra_nl) if extra_block else None
        )

    def _add_residual(
        self, out: torch.Tensor, x: torch.Tensor, last_conv_input: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``out`` is the residual branch after its last conv + norm, ``last_conv_input`` the
        input of that conv. Without autograd (at inference) the GC block writes into ``out``,
        so that its broadcast add costs one pass over ``out`` next to the residual add, and no
        new tensor. In training, where the last conv is a 1x1 conv with a frozen BatchNorm, the
        GC block's attention pooling reads ``last_conv_input`` in its backward (an
        :class:`AffineSource`) instead of keeping ``out`` alive."""
        inplace = not (torch.is_grad_enabled() and out.requires_grad)
        if self.context_block is not None and self.context_position == "after1x1":
            source = None if inplace or last_conv_input is None else _affine_source(self.conv3, last_conv_input)
            out = self.context_block(out, inplace=inplace, source=source)
        out += self.shortcut(x) if self.shortcut is not None else x
        out = F.relu_(out)
        if self.context_block is not None and self.context_position == "afterAdd":
            out = self.context_block(out, inplace=inplace)
        if self.extra_context is not None:
            out = self.extra_context(out)
        return out


def _affine_source(conv: Conv2d, conv_input: torch.Tensor) -> Optional[AffineSource]:
    """``conv``'s output as an :class:`AffineSource` of ``conv_input``, where ``conv`` is a
    1x1 conv followed by a FrozenBatchNorm2d or no norm (the fixed-BN models); None where it
    is anything else (a BatchNorm in training computes its statistics from the batch)."""
    plain_1x1 = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1
    if not plain_1x1 or conv.activation is not None:
        return None
    weight = conv.weight.reshape(conv.out_channels, conv.in_channels)
    if isinstance(conv.norm, FrozenBatchNorm2d):
        scale = conv.norm.weight * (conv.norm.running_var + conv.norm.eps).rsqrt()
        shift = conv.norm.bias - conv.norm.running_mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return AffineSource(conv_input, weight, scale, shift)
    if conv.norm is None:
        shift = conv.bias if conv.bias is not None else weight.new_zeros(conv.out_channels)
        return AffineSource(conv_input, weight, torch.ones_like(shift), shift)
    return None


class GCBasicBlock(_GlobalContextMixin, BasicBlock):
    """detectron2's ResNet-18/34 block; the "after1x1" GC block follows its last 3x3 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm="BN",
        gc: Optional[Mapping] = None,
        gc_position: str = "after1x1",
        extra_block: Optional[str] = None,
        extra_gc: Optional[Mapping] = None,
        extra_nl: Optional[Mapping] = None,
    ):
        super().__init__(in_channels, out_channels, stride=stride, norm=resolve_norm(norm))
        self._init_context(out_channels, gc, gc_position, extra_block, extra_gc, extra_nl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        return self._add_residual(self.conv2(out), x)


class GCBottleneckBlock(_GlobalContextMixin, BottleneckBlock):
    """detectron2's bottleneck block (ResNet-50/101/152, ResNeXt) with a GC block, and an
    optional deformable 3x3 conv.

    Args (besides those of detectron2's ``BottleneckBlock``):
        deform: use a deformable 3x3 conv; its offset conv ``conv2_offset`` starts at zero,
            so the block starts as the regular one.
        deform_modulated: DCNv2 (offsets and a sigmoid mask) instead of DCNv1.
        deform_num_groups: deformable groups (offset groups).
        gc: ``ContextBlock`` keyword arguments (``ratio``, ``pooling_type``,
            ``fusion_types``, ``transform``), or None for no GC block.
        gc_position: "after1x1" or "afterAdd".
        extra_block: "nl", "snl" or "gc" to apply one more context block to the output.
        extra_gc: ``ContextBlock`` keyword arguments of an extra "gc" block.
        extra_nl: ``NonLocalBlock`` keyword arguments of an extra "nl" block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm="BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
        deform: bool = False,
        deform_modulated: bool = False,
        deform_num_groups: int = 1,
        gc: Optional[Mapping] = None,
        gc_position: str = "after1x1",
        extra_block: Optional[str] = None,
        extra_gc: Optional[Mapping] = None,
        extra_nl: Optional[Mapping] = None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            bottleneck_channels=bottleneck_channels,
            stride=stride,
            num_groups=num_groups,
            norm=resolve_norm(norm),
            stride_in_1x1=stride_in_1x1,
            dilation=dilation,
        )
        self.deform_modulated = deform_modulated
        if deform:
            stride_3x3 = 1 if stride_in_1x1 else stride
            offset_channels = (3 if deform_modulated else 2) * 9 * deform_num_groups
            self.conv2_offset = Conv2d(
                bottleneck_channels,
                offset_channels,
                kernel_size=3,
                stride=stride_3x3,
                padding=dilation,
                dilation=dilation,
            )
            nn.init.zeros_(self.conv2_offset.weight)
            nn.init.zeros_(self.conv2_offset.bias)
            self.conv2 = DeformConv2d(
                bottleneck_channels,
                bottleneck_channels,
                kernel_size=3,
                stride=stride_3x3,
                padding=dilation,
                dilation=dilation,
                groups=num_groups,
                bias=False,
                norm=get_norm(norm, bottleneck_channels),
            )
            weight_init.c2_msra_fill(self.conv2)
        else:
            self.conv2_offset = None
        self._init_context(out_channels, gc, gc_position, extra_block, extra_gc, extra_nl)

    def _conv2(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv2_offset is None:
            return self.conv2(x)
        offset = self.conv2_offset(x)
        if self.deform_modulated:
            offset, mask = split_offset_mask(offset)
            return self.conv2(x, offset, mask)
        return self.conv2(x, offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self._conv2(out))
        return self._add_residual(self.conv3(out), x, last_conv_input=out)
