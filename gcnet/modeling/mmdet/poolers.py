"""RoI feature extraction as mmdetection's ``SingleRoIExtractor``."""

from typing import List

import torch
import torchvision

from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.structures import Boxes

__all__ = ["MMDetROIPooler", "MMDetV1ROIPooler", "roi_levels"]


def roi_levels(rois: torch.Tensor, finest_scale: float, num_levels: int, offset: float = 0.0) -> torch.Tensor:
    """mmdetection's ``SingleRoIExtractor.map_roi_levels``: the level (0-based) of each RoI
    ``(batch index, x1, y1, x2, y2)``, ``floor(log2(sqrt(w * h) / finest_scale + 1e-6))`` for
    its width ``x2 - x1 + offset`` and height ``y2 - y1 + offset`` (``offset`` 1 in v1's pixel
    convention)."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1] + offset) * (rois[:, 4] - rois[:, 2] + offset))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=num_levels - 1).long()


class MMDetROIPooler(ROIPooler):
    """detectron2's ``ROIPooler`` (same arguments; a RoIAlign ``pooler_type``) assigning RoIs to
    levels as mmdetection (v2, v3): :func:`roi_levels`, with the finest scale
    ``canonical_box_size / 2 ** (canonical_level - min_level)`` (56 for detectron2's FPN) and
    1e-6 added before the floor, where detectron2 adds 1e-8 (the RoIs whose square-root area
    lies within about 1e-6 of 112, 224 or 448 pixels change level). Each level pools with its
    RoIAlign, as mmcv's (``aligned``, ``sampling_ratio`` 0 for ``ROIAlignV2``).
    """

    offset = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.level_poolers[0], ROIAlign):
            raise ValueError(f"{type(self).__name__} pools with RoIAlign; pooler_type must be ROIAlign or ROIAlignV2")

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        if len(x) != len(self.level_poolers):
            raise ValueError(f"expected {len(self.level_poolers)} feature maps, got {len(x)}")
        rois = convert_boxes_to_pooler_format(box_lists)
        finest_scale = self.canonical_box_size / 2 ** (self.canonical_level - self.min_level)
        levels = roi_levels(rois, finest_scale, len(x), self.offset)
        output = x[0].new_zeros((len(rois), x[0].shape[1], *self.output_size))
        for level, (features, pooler) in enumerate(zip(x, self.level_poolers)):
            index = torch.nonzero(levels == level).squeeze(1)
            output.index_put_((index,), self.pool(pooler, features, rois[index]))
        return output

    def pool(self, pooler: ROIAlign, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """The features of ``rois`` (M, 5) from one level's map with its ``pooler``."""
        return pooler(features, rois)


class MMDetV1ROIPooler(MMDetROIPooler):
    """:class:`MMDetROIPooler` pooling as mmdetection v1's RoIAlign (``pooler_type``
    "ROIAlign", ``sampling_ratio`` 2): in its pixel convention a box ends after its last pixel
    (``(x2 + 1) * spatial_scale``), its level comes from its area in pixels (``offset`` 1), and
    a RoI under one feature pixel is not widened to one, as detectron2's unaligned RoIAlign
    widens it; no half-pixel offset.

    Computed with torchvision's aligned RoIAlign on the box moved by half a feature pixel, which
    agrees with v1's kernel to within half a float32 ulp of the box coordinates.
    """

    offset = 1.0

    def pool(self, pooler: ROIAlign, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        half = 0.5 / pooler.spatial_scale
        shifted = rois + rois.new_tensor([0.0, half, half, 1 + half, 1 + half])
        return torchvision.ops.roi_align(
            features, shifted, self.output_size, pooler.spatial_scale, pooler.sampling_ratio, aligned=True
        )
