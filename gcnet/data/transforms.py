"""Test-time resizing as the OpenMMLab releases do it: mmcv's ``imrescale`` (the size rounded as
``mmcv.image.rescale_size``, the pixels resampled by OpenCV's bilinear filter) in place of
detectron2's ``ResizeShortestEdge`` (its own rounding, PIL's filter, which also smooths when it
shrinks)."""

import sys
from typing import Tuple

import cv2
import numpy as np
from PIL import Image

import detectron2.data.transforms as T

__all__ = ["OpenCVResizeTransform", "OpenCVResizeShortestEdge", "rescale_factor"]

# PIL's filters (what detectron2's augmentations take) -> OpenCV's.
OPENCV_FILTERS = {Image.NEAREST: cv2.INTER_NEAREST, Image.BILINEAR: cv2.INTER_LINEAR, Image.BICUBIC: cv2.INTER_CUBIC}


class OpenCVResizeTransform(T.ResizeTransform):
    """detectron2's ``ResizeTransform`` (same arguments; ``interp`` a PIL filter, mapped to
    OpenCV's) with OpenCV's ``cv2.resize`` for images of any dtype, as ``mmcv.imresize``
    (backend "cv2") resizes them; label maps with nearest neighbours."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"expected an image of {self.w}x{self.h}, got {img.shape[1]}x{img.shape[0]}")
        interp = OPENCV_FILTERS[interp if interp is not None else self.interp]
        resized = cv2.resize(img, (self.new_w, self.new_h), interpolation=interp)
        return resized.reshape((self.new_h, self.new_w) + img.shape[2:])  # cv2 drops a last axis of 1

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Nearest neighbours; label maps of a type OpenCV does not resize (int64, bool) go
        through int32."""
        if segmentation.dtype in (np.int64, np.bool_):
            return self.apply_image(segmentation.astype(np.int32), interp=Image.NEAREST).astype(segmentation.dtype)
        return self.apply_image(segmentation, interp=Image.NEAREST)

    def inverse(self) -> "OpenCVResizeTransform":
        return OpenCVResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


def rescale_factor(h: int, w: int, short_edge_length: float, max_size: float) -> float:
    """The factor ``mmcv.image.rescale_size`` scales an image of ``h`` x ``w`` by to fit the
    scale (``max_size``, ``short_edge_length``): the largest that keeps the shorter side within
    ``short_edge_length`` and the longer within ``max_size``."""
    return min(max_size / max(h, w), short_edge_length / min(h, w))


class OpenCVResizeShortestEdge(T.ResizeShortestEdge):
    """detectron2's ``ResizeShortestEdge`` (same arguments) resizing as mmcv's ``imrescale``
    (mmdetection v1-v3's and mmsegmentation's ``Resize`` with ``keep_ratio=True``, the scale
    ``(max_size, short_edge_length)``): the factor of :func:`rescale_factor`, each side
    rounded as ``int(side * factor + 0.5)``, the pixels resized by OpenCV
    (:class:`OpenCVResizeTransform`).

    detectron2 rounds its two-step computation otherwise: 262 of the 1,018,081 sizes from 16
    to 1024 pixels, all with one side over 1333/800 times the other, come out one pixel
    shorter at (800, 1333).
    """

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        if self.is_range:
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return T.NoOpTransform()
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        return OpenCVResizeTransform(h, w, new_h, new_w, self.interp)

    @staticmethod
    def get_output_shape(oldh: int, oldw: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """(height, width) of an ``oldh`` x ``oldw`` image resized as ``mmcv.image.rescale_size``."""
        scale = rescale_factor(oldh, oldw, short_edge_length, max_size)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def rescaled(self, ratio: float) -> "OpenCVResizeShortestEdge":
        """This resize for the scale multiplied by ``ratio``, each side truncated as
        mmsegmentation's ``MultiScaleFlipAug`` computes its scales
        (``int(max_size * ratio), int(short_edge_length * ratio)``)."""
        if len(set(self.short_edge_length)) != 1:
            raise ValueError(f"only a resize to one scale can be rescaled, not to {self.short_edge_length}")
        max_size = self.max_size if self.max_size == sys.maxsize else int(self.max_size * ratio)
        return OpenCVResizeShortestEdge(
            int(self.short_edge_length[0] * ratio), max_size, sample_style="choice", interp=self.interp
        )
