"""Fold every fixed BatchNorm of a detectron2 model into the convolution before it, for
inference (:func:`gcnet.layers.fold_norm_into_conv` says why it is exact).

Where a norm sits in a detectron2 model: inside detectron2's ``Conv2d`` (``conv.norm``, applied
after the convolution and before its ``activation``, which stays), inside gcnet's deformable
:class:`~gcnet.modeling.DeformConv2d` (folded into its weight and bias: a deformable convolution
is linear in its weight, per output channel, whatever its offsets), after the output conv of an
NL block (``conv_out``, ``norm``), and as the module after a convolution in an ``nn.Sequential``.
Folded: detectron2's and torchvision's ``FrozenBatchNorm2d`` and, in eval mode, PyTorch's
BatchNorm, SyncBatchNorm and detectron2's ``NaiveSyncBatchNorm`` (gcnet's "SyncBN" on any
device), each by its exact type. Left as they are: GroupNorm, LayerNorm (the GC block's), every
BatchNorm in training mode, and subclasses that do more than normalise (timm's BatchNormAct2d).
"""

from typing import Iterator, Tuple

from torch import nn
from torchvision.ops import FrozenBatchNorm2d as TorchvisionFrozenBatchNorm2d

from detectron2.layers import Conv2d, FrozenBatchNorm2d, NaiveSyncBatchNorm

from gcnet.layers import BATCH_NORMS, NonLocalBlock, fold_norm_into_conv

from .deform_conv import DeformConv2d
from .norm import SyncBatchNorm

__all__ = ["FROZEN_NORMS", "EVAL_BATCH_NORMS", "fold_batch_norms"]

# Fixed in every mode.
FROZEN_NORMS = (FrozenBatchNorm2d, TorchvisionFrozenBatchNorm2d)
# Fixed in eval mode (exact types).
EVAL_BATCH_NORMS = BATCH_NORMS + (NaiveSyncBatchNorm, SyncBatchNorm)

# Convolutions whose output is linear in their weight, by exact type: a subclass may transform
# its weight first (timm's StdConv2d standardises it).
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv2d, DeformConv2d)


def _fold(conv: nn.Module, norm: nn.Module) -> bool:
    return fold_norm_into_conv(conv, norm, frozen_types=FROZEN_NORMS, batch_norm_types=EVAL_BATCH_NORMS)


def _sequential_pairs(sequential: nn.Sequential) -> Iterator[Tuple[str, nn.Module, nn.Module]]:
    """(name of the norm, conv, norm) of each conv directly followed by a module in ``sequential``."""
    children = list(sequential.named_children())
    for (_, conv), (name, norm) in zip(children, children[1:]):
        plain = getattr(conv, "norm", None) is None and getattr(conv, "activation", None) is None
        if type(conv) in _CONVS and plain:
            yield name, conv, norm


def fold_batch_norms(model: nn.Module) -> int:
    """Fold each fixed BatchNorm of ``model`` (in eval mode) into the convolution before it,
    in place, and remove it; return how many were folded. The folded model computes the same
    outputs (to float rounding); its state dict has the convs' new weights and biases and no
    entries for the folded norms, so load checkpoints before folding.

    Raises:
        ValueError: ``model`` is in training mode: folding would change what training
            optimises (a frozen norm's conv would train in the folded parameters).
    """
    if model.training:
        name = type(model).__name__
        raise ValueError(f"fold_batch_norms: {name} is in training mode; fold for inference (model.eval())")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, (Conv2d, DeformConv2d)) and module.norm is not None and _fold(module, module.norm):
            module.norm = None
            folded += 1
        elif isinstance(module, NonLocalBlock) and module.norm is not None and _fold(module.conv_out, module.norm):
            module.norm = None
            folded += 1
        elif isinstance(module, nn.Sequential):
            for name, conv, norm in list(_sequential_pairs(module)):
                if _fold(conv, norm):
                    setattr(module, name, nn.Identity())
                    folded += 1
    return folded
