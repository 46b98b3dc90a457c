"""The upstream releases' test-time computations, to check gcnet's against: mmcv's own image
functions where they are installed here (``imread``, ``imrescale``, ``imresize``,
``imnormalize``), and otherwise re-derivations of the published formulas of mmdetection v1 (the
original GCNet code), v2/v3 and mmsegmentation v0.x, written as plainly as their kernels
compute them (a loop per box where a kernel has a thread per box) and sharing no code with
gcnet's implementation. Tensors are float32, as upstream computes."""

import contextlib
import math
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.image import imnormalize, imresize

MAX_LOG_RATIO = abs(math.log(16 / 1000))  # mmdetection's wh_ratio_clip
MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])


# Images -------------------------------------------------------------------------------------


def normalize_v2(image_bgr: np.ndarray) -> torch.Tensor:
    """mmdetection v2's Normalize (mmcv's ``imnormalize``, to RGB) -> (1, 3, H, W)."""
    return torch.from_numpy(imnormalize(image_bgr, MEAN, STD, to_rgb=True).transpose(2, 0, 1).copy())[None]


def normalize_v1(image_bgr: np.ndarray) -> torch.Tensor:
    """mmdetection v1's ImageTransform normalisation (mmcv 0.2: float32 ``(rgb - mean) / std``)."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32)
    normalized = (rgb - MEAN.astype(np.float32)) / STD.astype(np.float32)
    return torch.from_numpy(normalized.transpose(2, 0, 1).copy())[None]


def pad_to_multiple(x: torch.Tensor, divisor: int = 32) -> torch.Tensor:
    """mmdetection's Pad(size_divisor=32): zeros below and right of the normalized image."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % divisor, 0, -h % divisor))


# Boxes --------------------------------------------------------------------------------------


def delta2bbox(rois: torch.Tensor, deltas: torch.Tensor, stds, max_shape, pixel: bool = False) -> torch.Tensor:
    """``delta2bbox`` of mmdetection v2 (``pixel`` False: boxes clipped to [0, W] x [0, H]) and
    of v1 (``pixel`` True: widths ``x2 - x1 + 1``, corners half a pixel inside, clipped to
    [0, W - 1] x [0, H - 1]); means 0; ``deltas`` (N, 4k)."""
    one = 1.0 if pixel else 0.0
    d = deltas * deltas.new_tensor(stds).repeat(deltas.shape[1] // 4)
    dw = d[:, 2::4].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    dh = d[:, 3::4].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    px, py = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None], ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
    pw, ph = (rois[:, 2] - rois[:, 0] + one)[:, None], (rois[:, 3] - rois[:, 1] + one)[:, None]
    gx, gy = px + pw * d[:, 0::4], py + ph * d[:, 1::4]
    gw, gh = pw * dw.exp(), ph * dh.exp()
    height, width = max_shape
    x1 = (gx - gw * 0.5 + 0.5 * one).clamp(0, width - one)
    y1 = (gy - gh * 0.5 + 0.5 * one).clamp(0, height - one)
    x2 = (gx + gw * 0.5 - 0.5 * one).clamp(0, width - one)
    y2 = (gy + gh * 0.5 - 0.5 * one).clamp(0, height - one)
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(deltas.shape)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, pixel: bool = False) -> List[int]:
    """Greedy NMS as mmdetection's kernels: by decreasing score, a box is dropped when its IoU
    with a kept box exceeds the threshold; areas ``(x2 - x1 + 1) * (y2 - y1 + 1)`` in v1
    (``pixel``). Returns the kept indices by decreasing score."""
    one = 1.0 if pixel else 0.0
    b = boxes.double().numpy()
    areas = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    order, kept = np.argsort(-scores.double().numpy(), kind="stable"), []
    suppressed = np.zeros(len(b), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        kept.append(int(i))
        w = np.maximum(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]) + one, 0)
        h = np.maximum(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]) + one, 0)
        inter = w * h
        suppressed |= inter / (areas[i] + areas - inter) > iou_threshold
    return kept


def multiclass_nms(boxes, scores, score_thr, iou_thr, max_num, pixel: bool = False):
    """mmdetection's ``multiclass_nms`` (background last, as gcnet's models order it):
    per class, the boxes scoring above ``score_thr``, greedy NMS; the ``max_num`` best of all.
    Returns (boxes, scores, labels) by decreasing score."""
    num_classes = scores.shape[1] - 1
    boxes = boxes.reshape(len(boxes), -1, 4).expand(-1, num_classes, -1)
    out_boxes, out_scores, out_labels = [], [], []
    for c in range(num_classes):
        rows = torch.nonzero(scores[:, c] > score_thr).squeeze(1)
        kept = rows[greedy_nms(boxes[rows, c], scores[rows, c], iou_thr, pixel)]
        out_boxes.append(boxes[kept, c])
        out_scores.append(scores[kept, c])
        out_labels.append(torch.full((len(kept),), c))
    out_scores = torch.cat(out_scores)
    best = torch.argsort(out_scores, descending=True, stable=True)[:max_num]
    return torch.cat(out_boxes)[best], out_scores[best], torch.cat(out_labels)[best]


# Anchors and proposals ----------------------------------------------------------------------


def base_anchors(stride: int, scale: float, ratios: Sequence[float], version: str) -> torch.Tensor:
    """mmdetection's ``AnchorGenerator.gen_base_anchors`` of base size ``stride``: v2 centred
    on 0, v1 centred on ((stride - 1) / 2, (stride - 1) / 2) with corners ``centre -+ (size -
    1) / 2`` rounded."""
    h_ratios = torch.tensor(ratios, dtype=torch.float32).sqrt()
    ws = stride * (1 / h_ratios) * torch.tensor(scale, dtype=torch.float32)
    hs = stride * h_ratios * torch.tensor(scale, dtype=torch.float32)
    if version == "v2":
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)
    c = 0.5 * (stride - 1)
    return torch.stack([c - 0.5 * (ws - 1), c - 0.5 * (hs - 1), c + 0.5 * (ws - 1), c + 0.5 * (hs - 1)], -1).round()


def grid_anchors(base: torch.Tensor, feature_size: Tuple[int, int], stride: int) -> torch.Tensor:
    """Anchors at every location, row by row, the base anchors of a location together."""
    ys, xs = (torch.arange(n) * stride for n in feature_size)
    ys, xs = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4).float()
    return (shifts + base[None]).reshape(-1, 4)


def rpn_proposals(logits, deltas, anchors, image_size, nms_pre, max_num, version: str) -> torch.Tensor:
    """mmdetection's RPN test: per level, the ``nms_pre`` best anchors by score, decoded (stds
    1) and clipped, NMS at 0.7 (v2: boxes without area dropped first); then the ``max_num``
    best of all levels. ``logits`` (A*H*W,) and ``deltas`` (A*H*W, 4) per level, in (H, W, A)
    order."""
    pixel = version == "v1"
    boxes, scores = [], []
    for level_logits, level_deltas, level_anchors in zip(logits, deltas, anchors):
        level_scores = level_logits.sigmoid()
        top = torch.argsort(level_scores, descending=True, stable=True)[:nms_pre]
        b = delta2bbox(level_anchors[top], level_deltas[top], (1.0, 1.0, 1.0, 1.0), image_size, pixel)
        s = level_scores[top]
        if not pixel:
            valid = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            b, s = b[valid], s[valid]
        kept = greedy_nms(b, s, 0.7, pixel)[:max_num]
        boxes.append(b[kept])
        scores.append(s[kept])
    scores = torch.cat(scores)
    best = torch.argsort(scores, descending=True, stable=True)[:max_num]
    return torch.cat(boxes)[best]


# RoI features -------------------------------------------------------------------------------


def roi_levels(rois: torch.Tensor, num_levels: int, pixel: bool) -> torch.Tensor:
    """``SingleRoIExtractor.map_roi_levels`` (finest scale 56), areas in pixels in v1."""
    one = 1.0 if pixel else 0.0
    scale = torch.sqrt((rois[:, 2] - rois[:, 0] + one) * (rois[:, 3] - rois[:, 1] + one))
    return torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, num_levels - 1).long()


def _bilinear(feature: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The kernels' ``bilinear_interpolate`` at points (y, x) of a (C, H, W) map: 0 outside
    [-1, size], coordinates below 0 taken as 0, the last pixel's value beyond it."""
    height, width = feature.shape[-2:]
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.long(), x.long()
    y_last, x_last = y0 >= height - 1, x0 >= width - 1
    y0, x0 = torch.where(y_last, height - 1, y0), torch.where(x_last, width - 1, x0)
    y1, x1 = torch.where(y_last, y0, y0 + 1), torch.where(x_last, x0, x0 + 1)
    y, x = torch.where(y_last, y0.float(), y), torch.where(x_last, x0.float(), x)
    ly, lx = y - y0, x - x0
    value = (
        (1 - ly) * (1 - lx) * feature[:, y0, x0]
        + (1 - ly) * lx * feature[:, y0, x1]
        + ly * (1 - lx) * feature[:, y1, x0]
        + ly * lx * feature[:, y1, x1]
    )
    return torch.where(outside, torch.zeros_like(value), value)


def roi_align(feature: torch.Tensor, box, out_size: int, spatial_scale: float, samples: int, version: str):
    """One RoI of one (C, H, W) map, as the RoIAlign kernel of mmdetection v1 (box end
    ``(x2 + 1) * scale``, size at least 0, ``samples`` per bin side) or mmcv's aligned one that
    v2 uses (half-pixel offset; ``samples`` 0: ``ceil(size / out_size)`` per bin side)."""
    x1, y1, x2, y2 = box.float()
    if version == "v1":
        start_x, start_y = x1 * spatial_scale, y1 * spatial_scale
        width = ((x2 + 1) * spatial_scale - start_x).clamp(min=0)
        height = ((y2 + 1) * spatial_scale - start_y).clamp(min=0)
    else:
        start_x, start_y = x1 * spatial_scale - 0.5, y1 * spatial_scale - 0.5
        width, height = x2 * spatial_scale - 0.5 - start_x, y2 * spatial_scale - 0.5 - start_y
    bin_h, bin_w = height / out_size, width / out_size
    grid_h = samples if samples > 0 else math.ceil(float(height) / out_size)
    grid_w = samples if samples > 0 else math.ceil(float(width) / out_size)
    if grid_h * grid_w == 0:  # an empty aligned RoI: no sample, 0
        return feature.new_zeros((feature.shape[0], out_size, out_size))
    bins = torch.arange(out_size, dtype=torch.float32)
    ys = start_y + bins[:, None] * bin_h + (torch.arange(grid_h) + 0.5)[None, :] * bin_h / grid_h  # (out, grid)
    xs = start_x + bins[:, None] * bin_w + (torch.arange(grid_w) + 0.5)[None, :] * bin_w / grid_w
    y = ys[:, None, :, None].expand(out_size, out_size, grid_h, grid_w)
    x = xs[None, :, None, :].expand(out_size, out_size, grid_h, grid_w)
    return _bilinear(feature, y, x).mean(dim=(-1, -2))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Runs many small tensor operations on one thread: on a busy machine, handing each to a
    second thread costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pool_rois(features: List[torch.Tensor], rois: torch.Tensor, out_size: int, samples: int, version: str):
    """``SingleRoIExtractor``: each RoI (image 0) from the level of :func:`roi_levels` of the
    P2-P5 ``features`` (strides 4-32)."""
    levels = roi_levels(rois, len(features), version == "v1")
    with one_thread():
        pooled = [
            roi_align(features[lvl][0], box, out_size, 1 / 2 ** (lvl + 2), samples, version)
            for box, lvl in zip(rois, levels.tolist())
        ]
    return torch.stack(pooled) if pooled else features[0].new_zeros((0, features[0].shape[1], out_size, out_size))


# Masks --------------------------------------------------------------------------------------


def paste_masks_v1(probabilities: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """v1's ``FCNMaskHead.get_seg_masks`` before its threshold (> 0.5): each mask resized by
    ``mmcv.imresize`` to its box truncated to whole pixels (at least 1 x 1), placed at its first
    pixel; 0 elsewhere. ``boxes`` in the original image."""
    pasted = np.zeros((len(boxes), *image_size), dtype=np.float32)
    for i, box in enumerate(boxes.numpy().astype(np.int32)):
        w, h = max(box[2] - box[0] + 1, 1), max(box[3] - box[1] + 1, 1)
        pasted[i, box[1] : box[1] + h, box[0] : box[0] + w] = imresize(probabilities[i].numpy(), (w, h))
    return torch.from_numpy(pasted)


def paste_masks_v2(probabilities: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """v2's ``_do_paste_mask`` over the whole image, before its threshold (>= 0.5): each image
    pixel centre mapped into its box, the mask sampled there bilinearly (``grid_sample``,
    borders zero)."""
    height, width = image_size
    ys, xs = torch.arange(height, dtype=torch.float32) + 0.5, torch.arange(width, dtype=torch.float32) + 0.5
    pasted = []
    for p, (x1, y1, x2, y2) in zip(probabilities, boxes):
        gx = ((xs - x1) / (x2 - x1) * 2 - 1).nan_to_num(posinf=0.0, neginf=0.0)
        gy = ((ys - y1) / (y2 - y1) * 2 - 1).nan_to_num(posinf=0.0, neginf=0.0)
        grid = torch.stack([gx[None, :].expand(height, -1), gy[:, None].expand(-1, width)], dim=-1)
        pasted.append(F.grid_sample(p[None, None], grid[None], align_corners=False)[0, 0])
    return torch.stack(pasted) if pasted else torch.zeros((0, height, width))


# Semantic segmentation ----------------------------------------------------------------------


def mmseg_test_scales(scale: Tuple[int, int], ratios: Sequence[float]) -> List[Tuple[int, int]]:
    """mmsegmentation v0.x ``MultiScaleFlipAug`` with ``img_scale`` and ``img_ratios``."""
    return [(int(scale[0] * r), int(scale[1] * r)) for r in ratios]


def mmseg_iou(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], num_classes: int, ignore_index: int = 255):
    """mmsegmentation's ``intersect_and_union`` summed over (prediction, label) pairs, then
    ``total_area_to_metrics``: (mIoU, per-class IoU)."""
    intersect, union = np.zeros(num_classes), np.zeros(num_classes)
    for prediction, label in pairs:
        keep = label != ignore_index
        prediction, label = prediction[keep], label[keep]
        hit = prediction[prediction == label]
        area_intersect = np.histogram(hit, bins=num_classes, range=(0, num_classes - 1))[0]
        area_prediction = np.histogram(prediction, bins=num_classes, range=(0, num_classes - 1))[0]
        area_label = np.histogram(label, bins=num_classes, range=(0, num_classes - 1))[0]
        intersect += area_intersect
        union += area_prediction + area_label - area_intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersect / union
    return np.nanmean(iou), iou
