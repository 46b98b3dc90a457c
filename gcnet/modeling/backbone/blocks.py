"""Residual blocks of GC-ResNet/ResNeXt.

detectron2's ``BasicBlock`` and ``BottleneckBlock`` (same parameter names, so detectron2 and
converted ImageNet checkpoints load unchanged), extended with

* a context module (``context_block``, the reference implementation's name; a GC block in
  GC-ResNet) at one of the positions of Table 5(b): "after1x1", after the last conv + norm of
  the residual branch and before the residual add (the paper's default); or "afterAdd", after
  the residual add and ReLU;
* an optional extra context module (``extra_context``) applied to the block's output: the one
  NL / SNL / GC block that Table 5(a) inserts between two residual blocks;
* for bottlenecks, an optional deformable 3x3 conv (``conv2_offset`` + ``conv2``, DCNv1 or
  DCNv2) that runs forward and backward on CPU and GPU.

Both context modules take a spec of :func:`gcnet.layers.create_context`: None, a name ("gc",
"nl", "snl") for that module with its default options, or a callable channels -> module, e.g.
``functools.partial(create_context, "gc", ratio=1 / 4)``.

A GC block (:class:`gcnet.layers.ContextBlock`) in the residual slot runs on the block's own
branch: the block asks for its output in place (written into the branch wherever no gradient
needs it), and in training, where the branch is a 1x1 conv followed by a frozen BatchNorm, says
so (:func:`frozen_conv_source`): the pooling's backward then reads that conv's input, which the
conv keeps anyway, and a GC-ResNet trains in the memory of its baseline. At inference, where that
conv has no norm left after it (its BatchNorm folded, :func:`gcnet.modeling.fold_batch_norms`),
the block is computed before the conv, from the conv's input (a quarter of the channels), and
its fusion goes into the conv's weights and bias (one image) or follows it in place: the GC
block then reads no full-width tensor at all (:meth:`gcnet.layers.ContextBlock.forward_from_source`).
"""

from typing import Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

from gcnet.layers import AffineSource, ContextBlock, ContextSpec, create_context

from ..deform_conv import DeformConv2d, split_offset_mask
from ..norm import get_norm, resolve_norm

__all__ = ["GCBasicBlock", "GCBottleneckBlock", "CONTEXT_POSITIONS", "frozen_conv_source"]

# Table 5(b).
CONTEXT_POSITIONS = ("after1x1", "afterAdd")


def frozen_conv_source(conv: Conv2d, conv_input: torch.Tensor) -> Optional[AffineSource]:
    """``conv(conv_input)`` as an :class:`~gcnet.layers.AffineSource` of ``conv_input``, where
    ``conv`` is a plain 1x1 conv followed by a FrozenBatchNorm2d or by no norm; None where it is
    anything else (a BatchNorm in training computes its statistics from the batch)."""
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


class _ContextSlot:
    """Holds the context modules of a residual block and applies them around its residual add."""

    def _init_context(self, channels: int, context: ContextSpec, position: str, extra_context: ContextSpec) -> None:
        if position not in CONTEXT_POSITIONS:
            raise ValueError(f"context_position must be one of {CONTEXT_POSITIONS}, got {position!r}")
        self.context_block = create_context(context, channels)
        self.context_position = position
        self.extra_context = create_context(extra_context, channels, key="extra_context")

    def _apply_context(self, out: torch.Tensor, last_conv_input: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The context module on ``out``, a tensor of this block's own: a GC block writes into it
        where it can, and in training reads ``last_conv_input`` (the input of ``self.conv3``, which
        made ``out``) for its pooling's backward where that conv allows."""
        if not isinstance(self.context_block, ContextBlock):
            return self.context_block(out)
        train_1x1 = last_conv_input is not None and torch.is_grad_enabled()
        source = frozen_conv_source(self.conv3, last_conv_input) if train_1x1 else None
        return self.context_block(out, source, inplace=True)

    def _add_residual(
        self, out: torch.Tensor, x: torch.Tensor, last_conv_input: Optional[torch.Tensor] = None, fused: bool = False
    ) -> torch.Tensor:
        """relu(shortcut(x) + out) with the context modules in their places; ``out`` is the
        residual branch after its last conv + norm (and the "after1x1" context module where
        ``fused``), ``last_conv_input`` that conv's input where the conv is ``self.conv3`` (a
        1x1 conv)."""
        if self.context_block is not None and self.context_position == "after1x1" and not fused:
            out = self._apply_context(out, last_conv_input)
        out += self.shortcut(x) if self.shortcut is not None else x
        out = F.relu_(out)
        if self.context_block is not None and self.context_position == "afterAdd":
            out = self._apply_context(out)
        if self.extra_context is not None:
            out = self.extra_context(out)
        return out


class GCBasicBlock(_ContextSlot, BasicBlock):
    """detectron2's ResNet-18/34 block; the "after1x1" GC block follows its last 3x3 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm="BN",
        context: ContextSpec = None,
        context_position: str = "after1x1",
        extra_context: ContextSpec = None,
    ):
        super().__init__(in_channels, out_channels, stride=stride, norm=resolve_norm(norm))
        self._init_context(out_channels, context, context_position, extra_context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        return self._add_residual(self.conv2(out), x)


class GCBottleneckBlock(_ContextSlot, BottleneckBlock):
    """detectron2's bottleneck block (ResNet-50/101/152, ResNeXt) with a GC block, and an
    optional deformable 3x3 conv.

    Args (besides those of detectron2's ``BottleneckBlock``):
        deform: use a deformable 3x3 conv; its offset conv ``conv2_offset`` starts at zero,
            so the block starts as the regular one.
        deform_modulated: DCNv2 (offsets and a sigmoid mask) instead of DCNv1.
        deform_num_groups: deformable groups (offset groups).
        context: the context module (``context_block``): a spec of
            :func:`gcnet.layers.create_context`, None for none.
        context_position: "after1x1" or "afterAdd".
        extra_context: a spec of one more context module applied to the output.
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
        context: ContextSpec = None,
        context_position: str = "after1x1",
        extra_context: ContextSpec = None,
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
        self._init_context(out_channels, context, context_position, extra_context)

    def _conv2(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv2_offset is None:
            return self.conv2(x)
        offset = self.conv2_offset(x)
        if self.deform_modulated:
            offset, mask = split_offset_mask(offset)
            return self.conv2(x, offset, mask)
        return self.conv2(x, offset)

    def context_before_conv3(self, out: torch.Tensor) -> Optional[torch.Tensor]:
        """conv3(out) with the "after1x1" GC block, computed by the block from ``out``, the
        conv's input (:meth:`ContextBlock.forward_from_source`), where ``conv3`` has no norm
        after it (folded for inference); None where this does not apply."""
        block = self.context_block
        if not isinstance(block, ContextBlock) or self.context_position != "after1x1" or self.conv3.norm is not None:
            return None
        source = frozen_conv_source(self.conv3, out)
        return None if source is None else block.forward_from_source(source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self._conv2(out))
        fused = self.context_before_conv3(out)
        if fused is not None:
            return self._add_residual(fused, x, fused=True)
        return self._add_residual(self.conv3(out), x, last_conv_input=out)
