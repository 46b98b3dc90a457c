"""mmdetection's box coding, and the pixel convention of its version 1.

mmdetection v2 and v3 measure a box continuously (width ``x2 - x1``), as detectron2 does;
mmdetection v1 (the original GCNet code) counts pixels (width ``x2 - x1 + 1``, the far corner the
last pixel inside the box): in its box decoding, IoU and NMS, anchors and RoIAlign. All its
versions clamp the predicted log width and height ratios from both sides (``wh_ratio_clip``
16 / 1000), where detectron2 clamps them only from above.
"""

import math
from typing import Tuple

import torch
import torchvision

from detectron2.modeling.box_regression import Box2BoxTransform

__all__ = ["MMDetBox2BoxTransform", "MMDetV1Box2BoxTransform", "clip_boxes", "pixel_nms", "pixel_batched_nms"]

# mmdetection's wh_ratio_clip (16 / 1000): predicted boxes are at most 62.5 times larger or smaller
# than their anchor or RoI.
MAX_LOG_RATIO = abs(math.log(16 / 1000))


class MMDetBox2BoxTransform(Box2BoxTransform):
    """detectron2's ``Box2BoxTransform`` decoding as mmdetection's ``DeltaXYWHBBoxCoder`` (and
    v1's ``delta2bbox``): the deltas times the target stds (``1 / weights``), the log width and
    height ratios clamped to ``[-scale_clamp, scale_clamp]``; boxes whose predicted size is
    under 1/62.5 of their RoI's come out 1/62.5 of it, where detectron2 shrinks them further.

    ``offset`` (a class attribute) is 0 here, 1 for mmdetection v1's pixel convention
    (:class:`MMDetV1Box2BoxTransform`).
    """

    offset = 0.0

    def __init__(self, weights: Tuple[float, float, float, float], scale_clamp: float = MAX_LOG_RATIO):
        super().__init__(weights, scale_clamp)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (N, k*4) of ``deltas`` (N, k*4) applied to ``boxes`` (N, 4)."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        stds = deltas.new_tensor([1 / w for w in self.weights]).repeat(deltas.shape[1] // 4)
        deltas = deltas * stds
        dx, dy = deltas[:, 0::4], deltas[:, 1::4]
        dw = deltas[:, 2::4].clamp(min=-self.scale_clamp, max=self.scale_clamp)
        dh = deltas[:, 3::4].clamp(min=-self.scale_clamp, max=self.scale_clamp)
        ctr_x, ctr_y = ((boxes[:, 0] + boxes[:, 2]) * 0.5)[:, None], ((boxes[:, 1] + boxes[:, 3]) * 0.5)[:, None]
        widths = (boxes[:, 2] - boxes[:, 0] + self.offset)[:, None]
        heights = (boxes[:, 3] - boxes[:, 1] + self.offset)[:, None]
        pred_w, pred_h = widths * dw.exp(), heights * dh.exp()
        pred_x, pred_y = ctr_x + widths * dx, ctr_y + heights * dy
        half = self.offset * 0.5  # v1: the far corner is the last pixel inside the box
        x1, y1 = pred_x - pred_w * 0.5 + half, pred_y - pred_h * 0.5 + half
        x2, y2 = pred_x + pred_w * 0.5 - half, pred_y + pred_h * 0.5 - half
        return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


class MMDetV1Box2BoxTransform(MMDetBox2BoxTransform):
    """:class:`MMDetBox2BoxTransform` in mmdetection v1's pixel convention (``bbox2delta`` and
    ``delta2bbox`` of the original GCNet code): a box spans ``x2 - x1 + 1`` pixels, so its
    decoded corners lie half a pixel inside those of the continuous box of the same centre and
    size."""

    offset = 1.0

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """The deltas that :meth:`apply_deltas` turns ``src_boxes`` into ``target_boxes`` with."""
        src, target = src_boxes.float(), target_boxes.float()
        src_w, src_h = src[:, 2] - src[:, 0] + 1, src[:, 3] - src[:, 1] + 1
        target_w, target_h = target[:, 2] - target[:, 0] + 1, target[:, 3] - target[:, 1] + 1
        dx = ((target[:, 0] + target[:, 2]) - (src[:, 0] + src[:, 2])) * 0.5 / src_w
        dy = ((target[:, 1] + target[:, 3]) - (src[:, 1] + src[:, 3])) * 0.5 / src_h
        deltas = torch.stack((dx, dy, torch.log(target_w / src_w), torch.log(target_h / src_h)), dim=1)
        return deltas * deltas.new_tensor(self.weights)


def clip_boxes(boxes: torch.Tensor, image_size: Tuple[int, int], offset: float) -> torch.Tensor:
    """``boxes`` (N, k*4) with every corner clamped to ``[0, width - offset]`` x
    ``[0, height - offset]``: the image's border in the continuous convention (``offset`` 0),
    its last pixel in mmdetection v1's (``offset`` 1)."""
    height, width = image_size
    limits = boxes.new_tensor([width, height, width, height]).repeat(boxes.shape[-1] // 4) - offset
    return torch.minimum(boxes.clamp(min=0), limits)


def _pixel_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Continuous boxes whose IoUs are those of ``boxes`` in the pixel convention."""
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def pixel_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """mmdetection v1's ``nms`` (its CUDA kernel): greedy NMS by score, boxes measured in
    pixels (width ``x2 - x1 + 1``), a box suppressed when its IoU with a kept one exceeds
    ``iou_threshold``. Returns the kept indices by decreasing score."""
    return torchvision.ops.nms(_pixel_boxes(boxes), scores, iou_threshold)


def pixel_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float):
    """:func:`pixel_nms` within each group (class), as v1's ``multiclass_nms`` runs it per class."""
    return torchvision.ops.batched_nms(_pixel_boxes(boxes), scores, groups, iou_threshold)
