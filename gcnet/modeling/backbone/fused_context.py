"""A GC block run inside a residual block, fused with the tensors the block owns.

:class:`gcnet.layers.ContextBlock` computes z = x * sigmoid(delta_mul(c)) + delta_add(c) as a
new tensor and never writes into x. Inside a residual block two savings are possible that the
block alone cannot know are safe:

* where no gradient needs x (at inference, or when neither x nor the GC block trains), z is
  written into x, the residual branch the block owns: the GC fusion then costs one pass over
  it and no new tensor;
* in training, where x is a 1x1 conv of h followed by a frozen BatchNorm (the fixed-BN
  models' "after1x1" position), x = scale * (P h) + shift, and the attention pooling's
  backward reads h (kept by that conv anyway) instead of keeping x alive
  (:class:`gcnet.layers.AffineSource`): a GC-ResNet trains in the memory of its baseline.

A block that forward hooks watch runs as a module instead, so that they see its true input
and output.
"""
from typing import Optional

import torch
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d

from gcnet.layers import AffineSource, ContextBlock

__all__ = ["fused_context_forward", "frozen_conv_source"]


def frozen_conv_source(conv: Conv2d, conv_input: torch.Tensor) -> Optional[AffineSource]:
    """``conv(conv_input)`` as an :class:`AffineSource` of ``conv_input``, where ``conv`` is a
    plain 1x1 conv followed by a FrozenBatchNorm2d or by no norm; None where it is anything
    else (a BatchNorm in training computes its statistics from the batch)."""
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


def _needs_gradient(x: torch.Tensor, block: nn.Module) -> bool:
    """Whether autograd records the block on ``x``: then a gradient may need ``x`` as it is."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in block.parameters()))


def _watched(block: nn.Module) -> bool:
    """Whether forward hooks are registered on ``block``."""
    return bool(block._forward_hooks or block._forward_pre_hooks)


def fused_context_forward(block: nn.Module, x: torch.Tensor, source: Optional[AffineSource] = None) -> torch.Tensor:
    """``block(x)`` for the residual branch ``x`` that the calling residual block owns: written
    into ``x`` where no gradient needs it, and with the attention pooling's backward reading
    ``source`` (which must describe ``x`` exactly; see :func:`frozen_conv_source`) in training.
    A block that is not a :class:`ContextBlock` (an NL block), or that forward hooks watch,
    is called as a module."""
    if not isinstance(block, ContextBlock) or _watched(block):
        return block(x)
    if _needs_gradient(x, block):
        return block.fuse(x, block.spatial_pool(x, source))
    scale, shift = block.fusion_terms(block.spatial_pool(x))
    if scale is not None:
        x.mul_(scale)
    if shift is not None:
        x.add_(shift)
    return x
