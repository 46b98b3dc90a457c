"""Heatmaps of spatial weights drawn over an image: min-max scaled, with a colour bar and a
title for the attention maps of GC blocks (the pictures of ``tools/demo.py`` and
``tools/web_demo.py``)."""

from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import nn

__all__ = ["COLOUR_BAR_TITLE", "overlay_heatmap", "draw_attention_map", "padded_input_size", "crop_to_image"]


def padded_input_size(model: nn.Module, size: Sequence[int]) -> Tuple[int, int]:
    """The (H, W) of the tensor a detectron2 model (or a backbone) batches an image of ``size``
    into: padded up to its backbone's ``size_divisibility`` (e.g. 32 with an FPN)."""
    divisor = getattr(getattr(model, "backbone", model), "size_divisibility", 0) or 1
    return tuple(-(-int(s) // divisor) * divisor for s in size)


def crop_to_image(weights: torch.Tensor, size: Sequence[int], padded_size: Sequence[int]) -> torch.Tensor:
    """The part of an (h, w) map over a padded input of ``padded_size`` that covers the image
    of ``size`` (the rest covers padding)."""
    rows = -(-weights.shape[-2] * int(size[0]) // int(padded_size[0]))
    cols = -(-weights.shape[-1] * int(size[1]) // int(padded_size[1]))
    return weights[..., :rows, :cols]


def _as_weights(weights) -> np.ndarray:
    weights = (
        weights.detach().float().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights, np.float32)
    )
    if weights.ndim != 2 or weights.size == 0 or (weights < 0).any():
        raise ValueError(f"expected non-negative (h, w) weights, got shape {weights.shape}")
    return weights.astype(np.float32)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")


def _jet(scaled: np.ndarray) -> np.ndarray:
    """RGB colours of the JET colormap for uint8 values (0: blue, 255: red)."""
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_heatmap(image: np.ndarray, weights, opacity: float = 0.5) -> np.ndarray:
    """Blend a heatmap of ``weights`` over ``image``.

    Args:
        image: (H, W, 3) uint8 RGB image.
        weights: (h, w) non-negative weights over the image (tensor or array), e.g. an
            attention map; resized bilinearly to (H, W) and min-max scaled, so the most
            attended position is red and the least attended blue (the JET colormap); a
            uniform map is all blue.
        opacity: weight of the heatmap in the blend.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    try:
        _check_image(image)
        weights = _as_weights(weights)
    except ValueError as e:
        raise ValueError(f"overlay_heatmap: {e}") from None
    height, width = image.shape[:2]
    low, high = float(weights.min()), float(weights.max())
    resized = cv2.resize(weights, (width, height), interpolation=cv2.INTER_LINEAR)
    scaled = (resized - low) / (high - low) if high > low else np.zeros_like(resized)
    heatmap = _jet(np.uint8(np.clip(scaled, 0, 1) * 255))
    return cv2.addWeighted(heatmap, opacity, image, 1 - opacity, 0)


def _text_style(height: int, width: int) -> Tuple[float, int]:
    """Font scale and thickness of the labels: about 2.5% of the shorter side high."""
    scale = max(0.3, min(height, width) / 900)
    return scale, 1 if scale < 0.8 else 2


def _label_box(canvas: np.ndarray, text: str) -> Tuple[int, int]:
    """Width and height of the box :func:`_put_label` draws ``text`` in."""
    scale, thickness = _text_style(*canvas.shape[:2])
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_h // 3)
    return text_w + 2 * pad, text_h + baseline + 2 * pad


def _put_label(canvas: np.ndarray, text: str, x: int, y: int, anchor_right: bool = False) -> None:
    """White ``text`` on a dark box, its top-left (or top-right) corner at (x, y)."""
    scale, thickness = _text_style(*canvas.shape[:2])
    (_, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_h // 3)
    box_w, box_h = _label_box(canvas, text)
    x, y = max(x - (box_w if anchor_right else 0), 0), max(y, 0)
    box = canvas[y : y + box_h, x : x + box_w]
    box[:] = box // 3  # darken what is behind the text
    white = (255, 255, 255)
    cv2.putText(
        canvas, text, (x + pad, y + pad + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, white, thickness, cv2.LINE_AA
    )


COLOUR_BAR_TITLE = "attention weight"


def draw_attention_map(image: np.ndarray, weights, title: str, opacity: float = 0.5) -> np.ndarray:
    """An attention map drawn over ``image`` at the image's size: the heatmap of
    :func:`overlay_heatmap` (min-max scaled), a colour bar at the right edge titled
    :data:`COLOUR_BAR_TITLE` and labelled with the largest and smallest weight, and ``title``
    (e.g. the block's name) in the top-left corner.

    Args:
        image: (H, W, 3) uint8 RGB image.
        weights: (h, w) non-negative weights over the image, e.g. the softmax_j(W_k x_j) of a
            GC block (Eq. 5, Fig. 5) cropped to the image.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    picture = overlay_heatmap(image, weights, opacity)
    weights = _as_weights(weights)
    height, width = picture.shape[:2]
    short = min(height, width)
    margin, bar_w, bar_h = max(3, short // 40), max(6, short // 30), max(16, height // 2)
    x1 = width - margin
    x0, y0 = x1 - bar_w, (height - bar_h) // 2
    gradient = np.linspace(255, 0, bar_h).astype(np.uint8)[:, None]
    bar = np.repeat(_jet(gradient), bar_w, axis=1)
    y1 = min(y0 + bar_h, height)
    picture[max(y0, 0) : y1, max(x0, 0) : x1] = bar[max(-y0, 0) : y1 - y0, max(-x0, 0) :]
    # The title above the largest weight, both to the left of the bar (its columns show the colours alone).
    title_y = y0 - _label_box(picture, COLOUR_BAR_TITLE)[1] - margin // 2
    _put_label(picture, COLOUR_BAR_TITLE, x0 - margin, title_y, anchor_right=True)
    _put_label(picture, f"{weights.max():.2g}", x0 - margin, y0, anchor_right=True)
    low = f"{weights.min():.2g}"
    _put_label(picture, low, x0 - margin, y1 - _label_box(picture, low)[1] - margin // 2, anchor_right=True)
    _put_label(picture, title, margin, margin)
    return picture
