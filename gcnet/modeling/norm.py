"""Normalization layers: detectron2's, with a synchronized BatchNorm that also runs on CPU.

The paper trains with synchronized BatchNorm (Section 5.1, Table 6). ``torch.nn.SyncBatchNorm``
refuses CPU tensors, so a multi-process CPU run (gloo) could not use it; :class:`SyncBatchNorm`
keeps the native kernel on accelerators and all-reduces the moments itself on CPU.
"""
from typing import Callable, Union

import torch
import torch.distributed as dist
from fvcore.nn.distributed import differentiable_all_reduce
from torch import nn

from detectron2.layers import get_norm as d2_get_norm

__all__ = ["SyncBatchNorm", "resolve_norm", "get_norm"]

NormSpec = Union[str, Callable[[int], nn.Module], None]


class SyncBatchNorm(nn.SyncBatchNorm):
    """BatchNorm over the whole distributed batch, on any device.

    On accelerators this is ``torch.nn.SyncBatchNorm``. For CPU tensors in a distributed
    training run it all-reduces the per-channel sum, sum of squares and element count over
    the default process group, so that the batch statistics, the gradients and the running
    statistics (with the unbiased variance, as ``nn.SyncBatchNorm``) equal those of a single
    BatchNorm over the concatenated batch. Workers may hold different numbers of images,
    zero included.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (
            input.device.type != "cpu"
            or not self.training
            or not dist.is_available()
            or not dist.is_initialized()
            or dist.get_world_size() == 1
        ):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        x = input.float()
        dims = [d for d in range(x.dim()) if d != 1]
        local = torch.cat(
            [
                x.sum(dim=dims),
                (x * x).sum(dim=dims),
                x.new_full((1,), float(x.numel() // channels)),
            ]
        )
        total = differentiable_all_reduce(local)
        count = total[-1].detach().clamp(min=1)
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp(min=0)

        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = (
                1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
            )
            unbiased = var.detach() * count / (count - 1).clamp(min=1)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)

        shape = [1, channels] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        return (x * scale.reshape(shape) + shift.reshape(shape)).to(input.dtype)


def resolve_norm(norm: NormSpec) -> NormSpec:
    """What detectron2's ``get_norm`` should receive for ``norm``: "SyncBN" becomes
    :class:`SyncBatchNorm`; every other value is returned unchanged.

    Use it in LazyConfigs for detectron2 modules that take a ``norm`` argument, e.g.
    ``L(FPN)(..., norm=L(resolve_norm)(norm="SyncBN"))``.
    """
    return SyncBatchNorm if norm == "SyncBN" else norm


def get_norm(norm: NormSpec, out_channels: int):
    """detectron2's ``get_norm``, with "SyncBN" meaning :class:`SyncBatchNorm`."""
    return d2_get_norm(resolve_norm(norm), out_channels)
