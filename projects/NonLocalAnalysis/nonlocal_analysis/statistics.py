"""Hooks that measure a model's non-local blocks while it runs (Tables 1-4 of the paper)."""

import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from gcnet.analysis import ForwardHooks
from gcnet.layers import NonLocalBlock

from .cosine import average_cosine_distance

__all__ = ["STATISTICS", "NonLocalStatistics"]

# The feature maps of Fig. 3 whose positions Tables 1-4 compare, each as one vector per
# position: "input" x_i (C), "key" W_k x_i and "query" W_q x_i (C', embedded instantiations
# only), "prod" the row of pairwise scores before normalisation (N_p), "att" the attention
# map omega_i (N_p), and "output" z_i - x_i (C).
STATISTICS = ("input", "key", "query", "prod", "att", "output")


def _positions(feature_map: torch.Tensor) -> torch.Tensor:
    """A (1, C, H, W) map as one C-vector per position: (H * W, C)."""
    return feature_map.flatten(2)[0].t()


class NonLocalStatistics(ForwardHooks):
    """Average cosine distances between the positions of each non-local block's feature maps,
    per image, averaged over every image the model sees while the hooks are on.

    Used as a context manager::

        with NonLocalStatistics(model) as stats:
            for image in images:
                predictor(image)
        stats.results()  # {block name: {"input": 0.40, "att": 0.02, ...}}

    Args:
        model: a model with :class:`gcnet.layers.NonLocalBlock` modules.
        block_names: the blocks to measure (default: all of them).
        keep_attention: keep the attention maps of each block's last call in
            ``attention[name]``: the (N, N_p, N_p) weights and the feature map's (h, w), for
            :func:`query_attention_figure` (an attribute: it may change between calls).
    """

    def __init__(self, model: nn.Module, block_names: Optional[Sequence[str]] = None, keep_attention: bool = False):
        blocks = {name: m for name, m in model.named_modules() if isinstance(m, NonLocalBlock)}
        if not blocks:
            raise ValueError(f"{type(model).__name__} has no non-local block (gcnet.layers.NonLocalBlock) to analyse")
        names = list(block_names) if block_names is not None else list(blocks)
        unknown = [n for n in names if n not in blocks]
        if unknown:
            raise ValueError(f"Not non-local blocks of the model: {unknown}; its non-local blocks are {list(blocks)}")
        self.blocks = {name: blocks[name] for name in names}
        self.keep_attention = keep_attention
        self.attention: Dict[str, Tuple[torch.Tensor, Tuple[int, int]]] = {}
        self._values: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))

    @staticmethod
    def measure(block: NonLocalBlock, x: torch.Tensor, z: torch.Tensor) -> Tuple[List[Dict[str, float]], torch.Tensor]:
        """The average cosine distance of every statistic, for each image of a call
        ``z = block(x)``, and the (N, N_p, N_p) attention weights measured on the way."""
        results, attention = [], []
        with torch.no_grad():
            for image, out in zip(x.split(1), z.split(1)):
                maps = {"input": _positions(image), "output": _positions(out - image)}
                if block.theta is not None and block.phi is not None:
                    maps["key"] = _positions(block.phi(image))
                    maps["query"] = _positions(block.theta(image))
                logits = block.pairwise_logits(image)
                weights = block.normalize_pairwise(logits)
                maps["prod"], maps["att"] = logits[0], weights[0]
                results.append({name: average_cosine_distance(value) for name, value in maps.items()})
                attention.append(weights)
        return results, torch.cat(attention)

    def _hook(self, name: str):
        def record(block: NonLocalBlock, inputs, output):
            results, attention = self.measure(block, inputs[0], output)
            for values in results:
                for statistic, value in values.items():
                    self._values[name][statistic].append(value)
            if self.keep_attention:
                self.attention[name] = (attention.cpu(), tuple(inputs[0].shape[-2:]))

        return record

    def num_images(self, name: str) -> int:
        """How many images block ``name`` has been measured on."""
        return len(self._values[name]["input"])

    def results(self) -> Dict[str, Dict[str, float]]:
        """{block: {statistic: mean over images}} (images where a statistic is undefined,
        e.g. a block whose output is still zero, are left out of its mean; NaN if all are)."""
        results = {}
        for name in self.blocks:
            results[name] = {}
            for statistic in STATISTICS:
                values = [v for v in self._values[name].get(statistic, []) if not math.isnan(v)]
                if statistic in self._values[name]:
                    results[name][statistic] = sum(values) / len(values) if values else float("nan")
        return results
