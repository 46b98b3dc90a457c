"""Normalization layers: detectron2's, with a synchronized BatchNorm that also runs on CPU.

The paper trains with synchronized BatchNorm (Section 5.1, Table 6). ``torch.nn.SyncBatchNorm``
refuses CPU tensors, and DistributedDataParallel refuses it in CPU modules, so a multi-process
CPU run (gloo) could not use it. :class:`SyncBatchNorm` runs torch's synchronized kernel on
accelerators and all-reduces the moments itself on CPU.
"""
from typing import Callable, Union

import torch
import torch.distributed as dist
from fvcore.nn.distributed import differentiable_all_reduce
from torch import nn
from torch.nn.modules._functions import SyncBatchNorm as _sync_batch_norm

from detectron2.layers import get_norm as d2_get_norm

__all__ = ["SyncBatchNorm", "resolve_norm", "get_norm"]

NormSpec = Union[str, Callable[[int], nn.Module], None]


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the whole distributed batch, on any device.

    In a training step with several processes, the batch statistics, their gradients and the
    running statistics (with the unbiased variance) equal those of one BatchNorm over the
    concatenated batch; workers may hold different numbers of images, zero included. On
    accelerators this is the kernel of ``torch.nn.SyncBatchNorm``; on CPU the per-channel sum,
    sum of squares and count are all-reduced over the default process group. Otherwise
    (evaluation, one process) it is ``nn.BatchNorm2d``, and its state dict is BatchNorm's.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        world_size = dist.get_world_size()
        if world_size == 1:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = self._momentum()
        if input.device.type != "cpu":
            return _sync_batch_norm.apply(
                input, self.weight, self.bias, self.running_mean, self.running_var,
                self.eps, momentum, dist.group.WORLD, world_size,
            )  # fmt: skip
        return self._cpu_forward(input, momentum)

    def _momentum(self) -> float:
        """The running-statistics update factor of this step, as nn.BatchNorm computes it."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            return 1.0 / self.num_batches_tracked.item()
        return self.momentum

    def _cpu_forward(self, input: torch.Tensor, momentum: float) -> torch.Tensor:
        # The moments are accumulated in float64: E[x^2] - E[x]^2 loses precision in float32
        # when a channel's variance is small next to its mean.
        channels = input.shape[1]
        x = input.double()
        dims = [0, 2, 3]
        local = torch.cat(
            [x.sum(dim=dims), (x * x).sum(dim=dims), x.new_full((1,), float(x.numel() // channels))]
        )
        total = differentiable_all_reduce(local)
        count = total[-1].detach().clamp(min=1)
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp(min=0)
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp(min=1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        scale = torch.rsqrt(var + self.eps) * self.weight
        shift = self.bias - mean * scale
        return (x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)).to(input.dtype)


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
