"""The attention maps of GC blocks (the softmax of ``conv_mask``, Fig. 5), recorded as a model
runs, and what they say in two numbers (entropy and peak)."""

import fnmatch
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from gcnet.layers import ContextBlock

from .heatmap import crop_to_image, padded_input_size
from .hooks import ForwardHooks

__all__ = [
    "find_context_blocks",
    "default_context_blocks",
    "short_block_name",
    "ContextAttentionRecorder",
    "predict_with_attention",
    "AttentionSummary",
    "summarize_attention",
]

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


def short_block_name(name: str) -> str:
    """``backbone.bottom_up.res5.2.context_block`` -> ``res5.2``; ``sem_seg_head.context`` as it is."""
    return re.sub(r"^(backbone\.)?(bottom_up\.)?", "", name).replace(".context_block", "") or name


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

    # The map of each call's input, read before the block runs: in a residual block, a GC
    # block writes its output into its input where no gradient needs it.
    reads_inputs_only = True

    def _hook(self, name: str):
        def record(block: ContextBlock, inputs):
            with torch.no_grad():
                self.maps[name] = block.attention_map(inputs[0]).cpu()

        return record

    def __enter__(self) -> "ContextAttentionRecorder":
        self.maps = {}
        # Each recorded block runs as a module on its input (no inference fusion into its conv).
        self._fused = {name: block.fuse_into_producer for name, block in self.blocks.items()}
        for block in self.blocks.values():
            block.fuse_into_producer = False
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for name, block in self.blocks.items():
            block.fuse_into_producer = self._fused[name]


def predict_with_attention(
    predictor, image_bgr, block_names: Optional[Sequence[str]] = None, output_size: Optional[Tuple[int, int]] = None
):
    """Run a :class:`gcnet.engine.Predictor` on one image and record the attention maps of GC
    blocks over that image.

    Args:
        predictor: a :class:`gcnet.engine.Predictor` (anything with its ``preprocess``,
            ``predict`` and ``model``).
        image_bgr: (H, W, 3) uint8 BGR image, as the predictor takes it.
        block_names: the blocks (default: :func:`default_context_blocks`).
        output_size: the (height, width) of the predictions (default: the image's), see
            :meth:`gcnet.engine.Predictor.preprocess`.

    Returns:
        the predictions (as the predictor returns them) and, per block, its (h, w) attention
        map over the image, the part over the batch's padding cropped. With sliding-window or
        test-time-augmented inference, a block's map is that of its last window or
        augmentation.
    """
    model_input = predictor.preprocess(image_bgr, output_size)
    with ContextAttentionRecorder(predictor.model, block_names) as recorder, torch.no_grad():
        predictions = predictor.predict(model_input)
    size = model_input["image"].shape[-2:]
    padded = padded_input_size(predictor.model, size)
    return predictions, {name: crop_to_image(maps[0], size, padded) for name, maps in recorder.maps.items()}


@dataclass(frozen=True)
class AttentionSummary:
    """An attention map in two numbers.

    Attributes:
        entropy: -sum_j p_j log p_j / log N_p of the map p over N_p positions: 1 for the
            uniform map of average pooling, 0 when all the weight is on one position.
        peak: (x, y), the image pixel at the centre of the most attended position.
    """

    entropy: float
    peak: Tuple[int, int]

    def __str__(self) -> str:
        """Three significant digits of the entropy (maps of one photo often differ in the third)."""
        return f"entropy {self.entropy:#.3g}, peak at x={self.peak[0]}, y={self.peak[1]}"


def summarize_attention(weights: torch.Tensor, image_size: Sequence[int]) -> AttentionSummary:
    """The :class:`AttentionSummary` of an (h, w) attention map over an image of ``image_size``
    (H, W); the map is renormalised to sum to 1 (a cropped map may not)."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.ndim != 2 or weights.numel() == 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"summarize_attention: expected non-negative (h, w) weights with a positive sum, got {tuple(weights.shape)}"
        )
    p = (weights / weights.sum()).flatten()
    p = p[p > 0]
    entropy = max(0.0, float(-(p * p.log()).sum() / math.log(weights.numel()))) if weights.numel() > 1 else 0.0
    row, col = divmod(int(weights.argmax()), weights.shape[1])
    height, width = int(image_size[0]), int(image_size[1])
    x = min(int((col + 0.5) * width / weights.shape[1]), width - 1)
    y = min(int((row + 0.5) * height / weights.shape[0]), height - 1)
    return AttentionSummary(entropy=entropy, peak=(x, y))
