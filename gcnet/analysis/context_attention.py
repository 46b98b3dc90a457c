"""The attention maps of GC blocks (the softmax of ``conv_mask``, Fig. 5), recorded as a model
runs."""
import fnmatch
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from gcnet.layers import ContextBlock

from .hooks import ForwardHooks

__all__ = ["find_context_blocks", "default_context_blocks", "ContextAttentionRecorder"]

_STAGE_BLOCK = re.compile(r"^(?P<stage>.+)\.(?P<index>\d+)\.context_block$")


def find_context_blocks(model: nn.Module, patterns: Sequence[str]) -> List[str]:
    """Names of the :class:`ContextBlock` modules of ``model`` that match any of the
    ``fnmatch`` patterns (e.g. ``"*res5.2.context_block"``, ``"*res4.*"``)."""
    blocks = [name for name, m in model.named_modules() if isinstance(m, ContextBlock)]
    selected = [name for name in blocks if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not selected:
        raise ValueError(
            f"No GC block matches {list(patterns)}; the model's GC blocks are: "
            + (", ".join(blocks[:8]) + (" ..." if len(blocks) > 8 else "") if blocks else "none")
        )
    return selected


def default_context_blocks(model: nn.Module) -> List[str]:
    """The last GC block of each stage (``...res3.3.context_block``, ``...res4.5...``), and
    every GC block outside a stage (e.g. a segmentation head's)."""
    last_of_stage: Dict[str, str] = OrderedDict()
    for name, module in model.named_modules():
        if isinstance(module, ContextBlock):
            match = _STAGE_BLOCK.match(name)
            last_of_stage[match["stage"] if match else name] = name
    return list(last_of_stage.values())


class ContextAttentionRecorder(ForwardHooks):
    """Records the attention maps of chosen GC blocks while the model runs.

    Used as a context manager; after each forward pass, ``maps[name]`` holds the (N, H, W)
    weights softmax_j(W_k x_j) of the block's last call (each map sums to 1), on the CPU::

        with ContextAttentionRecorder(model, default_context_blocks(model)) as recorder:
            model(inputs)
        recorder.maps["backbone.bottom_up.res5.2.context_block"]

    Args:
        model: a model with :class:`ContextBlock` modules.
        block_names: names of the blocks to record (default: :func:`default_context_blocks`).
    """

    def __init__(self, model: nn.Module, block_names: Optional[Sequence[str]] = None):
        modules = dict(model.named_modules())
        names = list(block_names) if block_names is not None else default_context_blocks(model)
        wrong = [n for n in names if not isinstance(modules.get(n), ContextBlock)]
        if wrong:
            raise ValueError(f"Not GC blocks of the model: {wrong}")
        if not names:
            raise ValueError("The model has no GC block to record")
        self.blocks = {name: modules[name] for name in names}
        self.maps: Dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def record(block: ContextBlock, inputs, output):
            with torch.no_grad():
                self.maps[name] = block.attention_map(inputs[0]).cpu()

        return record

    def __enter__(self) -> "ContextAttentionRecorder":
        self.maps = {}
        return super().__enter__()
