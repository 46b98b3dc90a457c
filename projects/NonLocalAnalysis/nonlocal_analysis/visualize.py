"""Attention maps of a non-local block for several query positions (Fig. 2 of the paper)."""

from typing import Sequence, Tuple

import cv2
import numpy as np
import torch

from gcnet.analysis import crop_to_image, overlay_heatmap

__all__ = ["query_attention_figure"]


def query_attention_figure(
    image: np.ndarray,
    attention: torch.Tensor,
    feature_size: Tuple[int, int],
    model_input_size: Tuple[int, int],
    padded_size: Tuple[int, int],
    query_points: Sequence[Tuple[float, float]],
) -> np.ndarray:
    """One panel per query point, side by side: that query position's attention map as a
    heatmap over the image, the query marked in red.

    Args:
        image: (H, W, 3) uint8 RGB image, as given to the model.
        attention: (N_p, N_p) attention of one image (row i: query position i).
        feature_size: the (h, w) of the block's feature map; N_p = h * w.
        model_input_size: the (H', W') of the resized image the model saw.
        padded_size: the (H'', W'') of the padded input tensor (:func:`padded_input_size`).
        query_points: (y, x) positions as fractions of the image's height and width.

    Returns:
        (H, W * len(query_points), 3) uint8 RGB image.
    """
    h, w = feature_size
    if attention.shape != (h * w, h * w):
        raise ValueError(f"attention must be ({h * w}, {h * w}) for a {h}x{w} feature map, got {list(attention.shape)}")
    valid = crop_to_image(torch.zeros(h, w), model_input_size, padded_size).shape
    height, width = image.shape[:2]
    panels = []
    for fy, fx in query_points:
        row, col = min(int(fy * valid[0]), valid[0] - 1), min(int(fx * valid[1]), valid[1] - 1)
        weights = attention[row * w + col].reshape(h, w)
        panel = overlay_heatmap(image, crop_to_image(weights, model_input_size, padded_size))
        center = (int((col + 0.5) / valid[1] * width), int((row + 0.5) / valid[0] * height))
        cv2.circle(panel, center, max(3, min(height, width) // 60), (255, 0, 0), thickness=-1)
        panels.append(panel)
    return np.concatenate(panels, axis=1)
