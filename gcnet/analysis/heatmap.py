"""Heatmaps of spatial weights drawn over an image."""
from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import nn

__all__ = ["overlay_heatmap", "padded_input_size", "crop_to_image"]


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


def overlay_heatmap(image: np.ndarray, weights, opacity: float = 0.5) -> np.ndarray:
    """Blend a heatmap of ``weights`` over ``image``.

    Args:
        image: (H, W, 3) uint8 RGB image.
        weights: (h, w) non-negative weights over the image (tensor or array), e.g. an
            attention map; resized bilinearly to (H, W) and scaled by their maximum, so the
            most attended position is red and zero weight is blue (the JET colormap).
        opacity: weight of the heatmap in the blend.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay_heatmap: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    weights = weights.detach().float().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights, np.float32)
    if weights.ndim != 2 or (weights < 0).any():
        raise ValueError(f"overlay_heatmap: expected non-negative (h, w) weights, got shape {weights.shape}")
    height, width = image.shape[:2]
    resized = cv2.resize(weights.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    peak = resized.max()
    scaled = np.uint8(np.clip(resized / peak if peak > 0 else resized, 0, 1) * 255)
    heatmap = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(heatmap, opacity, image, 1 - opacity, 0)
