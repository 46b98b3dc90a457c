"""Normalization layers: detectron2's, with a synchronized BatchNorm that also runs on CPU.

The paper trains with synchronized BatchNorm (Section 5.1, Table 6). ``torch.nn.SyncBatchNorm``
runs on accelerators only, and DistributedDataParallel refuses it in CPU modules, so a
multi-process CPU run (gloo) cannot use it. "SyncBN" therefore means torch's
``nn.SyncBatchNorm`` where the run synchronizes accelerators, and :class:`SyncBatchNorm`
(detectron2's ``NaiveSyncBatchNorm``) otherwise.
"""

from typing import Callable, Union

import torch
import torch.distributed as dist
from torch import nn

from detectron2.layers import NaiveSyncBatchNorm
from detectron2.layers import get_norm as d2_get_norm
from detectron2.utils import comm

__all__ = ["SyncBatchNorm", "resolve_norm", "get_norm"]

NormSpec = Union[str, Callable[[int], nn.Module], None]


class SyncBatchNorm(NaiveSyncBatchNorm):
    """BatchNorm over the whole distributed batch, on any device: detectron2's
    ``NaiveSyncBatchNorm`` weighting each worker by its number of images (``stats_mode="N"``:
    the statistics of one BatchNorm over the concatenated batch when the workers' inputs have
    the same height and width; a worker may hold no image), computed in float64, with the
    running variance kept unbiased, as torch's BatchNorm keeps it. In evaluation and in one
    process it is ``nn.BatchNorm2d``, and its state dict is BatchNorm's.
    """

    def __init__(self, num_features: int, **kwargs):
        if kwargs.get("momentum", 0.1) is None:
            raise ValueError("SyncBatchNorm: momentum must be a number (no cumulative average)")
        super().__init__(num_features, stats_mode="N", **kwargs)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and comm.get_world_size() > 1):
            return super().forward(input)
        self.num_batches_tracked.add_(1)
        previous = self.running_var.clone()
        # In float64: E[x^2] - E[x]^2 loses precision in float32 when a channel's variance is
        # small next to its mean.
        output = super().forward(input.double()).to(input.dtype)
        count = torch.tensor([float(input.numel() // input.shape[1])], device=input.device)
        dist.all_reduce(count)
        if count.item() > 1:
            # NaiveSyncBatchNorm kept (1 - m) * previous + m * var with the biased var; the
            # unbiased one is var * count / (count - 1).
            self.running_var.add_((self.running_var - (1 - self.momentum) * previous) / (count - 1))
        return output


def _sync_batch_norm(num_features: int) -> nn.Module:
    """torch's ``nn.SyncBatchNorm`` where the default process group synchronizes accelerators
    (NCCL), :class:`SyncBatchNorm` otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() != "gloo":
        return nn.SyncBatchNorm(num_features)
    return SyncBatchNorm(num_features)


def resolve_norm(norm: NormSpec) -> NormSpec:
    """What detectron2's ``get_norm`` should receive for ``norm``: "SyncBN" becomes a factory of
    torch's ``nn.SyncBatchNorm`` in a run over accelerators and of :class:`SyncBatchNorm`
    otherwise; every other value is returned unchanged.

    Use it in LazyConfigs for detectron2 modules that take a ``norm`` argument, e.g.
    ``L(FPN)(..., norm=L(resolve_norm)(norm="SyncBN"))``.
    """
    return _sync_batch_norm if norm == "SyncBN" else norm


def get_norm(norm: NormSpec, out_channels: int):
    """detectron2's ``get_norm``, with "SyncBN" as :func:`resolve_norm` says."""
    return d2_get_norm(resolve_norm(norm), out_channels)
