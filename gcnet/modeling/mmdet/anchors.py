"""mmdetection v1's anchors."""

from collections import abc
from typing import List, Sequence, Union

import torch

from detectron2.config import configurable
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY, BufferList, DefaultAnchorGenerator

__all__ = ["MMDetV1AnchorGenerator"]


def _per_level(values: Union[Sequence, Sequence[Sequence]], num_levels: int, name: str) -> List[List[float]]:
    """detectron2's broadcasting of an anchor option: one list for every level, or a list per level."""
    if not isinstance(values[0], abc.Sequence):
        return [list(values)] * num_levels
    if len(values) != num_levels:
        raise ValueError(f"{name} must hold one list per feature level ({num_levels}), got {len(values)}")
    return [list(v) for v in values]


@ANCHOR_GENERATOR_REGISTRY.register()
class MMDetV1AnchorGenerator(DefaultAnchorGenerator):
    """``DefaultAnchorGenerator`` (same arguments, ``offset`` 0) with the anchors of mmdetection
    v1's ``AnchorGenerator`` (the original GCNet code), in its pixel convention: at each
    location ``(i, j) * stride`` the anchors of base size ``stride`` centred on pixel
    ``((stride - 1) / 2, (stride - 1) / 2)``, of width ``size / sqrt(ratio)`` and height
    ``size * sqrt(ratio)`` pixels (``size`` = the anchor scale times the stride), corners
    ``centre -+ (width - 1) / 2`` rounded to whole pixels; ordered by aspect ratio, then size.

    detectron2's anchors (and mmdetection v2's) are centred on the location itself, unrounded:
    the stride-4 anchors differ by up to 2.31 pixels.
    """

    @configurable
    def __init__(self, *, sizes, aspect_ratios, strides, offset: float = 0.0):
        if offset != 0.0:
            raise ValueError(f"mmdetection v1's anchors are centred on a pixel; offset must be 0, got {offset}")
        super().__init__(sizes=sizes, aspect_ratios=aspect_ratios, strides=strides, offset=0.0)
        levels = len(strides)
        sizes, aspect_ratios = _per_level(sizes, levels, "sizes"), _per_level(aspect_ratios, levels, "aspect_ratios")
        self.cell_anchors = BufferList(
            [self.pixel_cell_anchors(stride, s, a) for stride, s, a in zip(strides, sizes, aspect_ratios)]
        )

    @staticmethod
    def pixel_cell_anchors(stride: int, sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
        """(len(aspect_ratios) * len(sizes), 4) anchors of the location (0, 0), in float32 as v1
        computes them."""
        centre = 0.5 * (stride - 1)
        scales = torch.tensor([s / stride for s in sizes], dtype=torch.float32)
        h_ratios = torch.tensor(aspect_ratios, dtype=torch.float32).sqrt()
        widths = (stride * (1 / h_ratios)[:, None] * scales[None, :]).reshape(-1)
        heights = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
        half_w, half_h = 0.5 * (widths - 1), 0.5 * (heights - 1)
        return torch.stack([centre - half_w, centre - half_h, centre + half_w, centre + half_h], dim=-1).round()
