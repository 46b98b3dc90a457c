"""Folding a fixed BatchNorm into the convolution before it, for inference.

A BatchNorm whose statistics no longer change (a frozen one, or any BatchNorm in eval mode with
running statistics) is a per-channel affine map, ``norm(y) = y * scale + shift`` with
``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale``. After a convolution
``y = W x + b`` it folds into the convolution's weights:

    norm(W x + b) = (W * scale) x + (b * scale + shift),

so the folded network computes the same function with one pass over each feature map fewer.
The folded weights are computed in float64 and rounded once to the convolution's dtype.

Nothing here folds a BatchNorm that trains (its statistics come from the batch), one without
running statistics, or anything but a BatchNorm (the GC block's LayerNorm normalises each
sample by its own statistics and stays as it is).
"""

from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ["BATCH_NORMS", "fixed_norm_affine", "fold_affine_into_conv", "fold_norm_into_conv"]

# The BatchNorm classes of PyTorch whose eval-mode forward is the affine map of their running
# statistics (SyncBatchNorm is BatchNorm outside training). Matched by exact type: a subclass
# may do more (timm's BatchNormAct2d applies an activation after the norm).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


def _statistics_affine(norm: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) in float64, on the CPU, of a module with running_mean, running_var, eps
    and an optional weight and bias."""
    scale = (_float64(norm.running_var) + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * _float64(norm.weight)
    shift = -_float64(norm.running_mean) * scale
    if norm.bias is not None:
        shift = shift + _float64(norm.bias)
    return scale, shift


def fixed_norm_affine(
    norm: nn.Module, frozen_types: Tuple[type, ...] = (), batch_norm_types: Tuple[type, ...] = BATCH_NORMS
) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The per-channel ``(scale, shift)`` (float64, CPU) with ``norm(y) = y * scale + shift``,
    where ``norm`` applies fixed statistics; None for anything else.

    Args:
        frozen_types: frozen BatchNorms (those of other libraries, with ``running_mean``,
            ``running_var``, ``weight``, ``bias`` and ``eps``), whose statistics are fixed in
            every mode; matched with ``isinstance``.
        batch_norm_types: BatchNorms whose statistics are fixed in eval mode when they track
            running statistics; matched by exact type (:data:`BATCH_NORMS`).
    """
    if isinstance(norm, frozen_types):
        return _statistics_affine(norm)
    if type(norm) in batch_norm_types and not norm.training and norm.running_var is not None:
        return _statistics_affine(norm)
    return None


def fold_affine_into_conv(conv: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make ``conv`` (a module with a ``weight`` of shape (out_channels, ...) and a ``bias``
    that may be None: ``nn.Conv*d``, torchvision's ``DeformConv2d``) compute
    ``conv(x) * scale + shift`` per output channel. The new weight and bias are computed in
    float64 and rounded once; a conv without a bias gets one."""
    weight = conv.weight
    if scale.shape != (weight.shape[0],) or shift.shape != (weight.shape[0],):
        raise ValueError(
            f"fold_affine_into_conv: scale and shift must have {weight.shape[0]} channels (the conv's outputs), "
            f"got {tuple(scale.shape)} and {tuple(shift.shape)}"
        )
    scale, shift = _float64(scale), _float64(shift)
    broadcast = scale.reshape(-1, *([1] * (weight.dim() - 1)))
    folded_weight = _float64(weight) * broadcast
    folded_bias = shift if conv.bias is None else _float64(conv.bias) * scale + shift
    for name, value in (("weight", folded_weight), ("bias", folded_bias)):
        value = value.to(device=weight.device, dtype=weight.dtype)
        setattr(conv, name, nn.Parameter(value, requires_grad=weight.requires_grad))


def fold_norm_into_conv(conv: nn.Module, norm: nn.Module, **norm_types) -> bool:
    """Fold ``norm``, which follows ``conv``, into ``conv`` when ``norm`` applies fixed
    statistics (:func:`fixed_norm_affine`, which takes ``norm_types``); True when it was folded
    (the caller then drops ``norm``), False when it was left as it is."""
    affine = fixed_norm_affine(norm, **norm_types)
    if affine is None:
        return False
    fold_affine_into_conv(conv, *affine)
    return True
