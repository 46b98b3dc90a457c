"""Mask R-CNN that returns mmdetection's detections for the original image."""

from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch

from detectron2.config import configurable
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances

from .fast_rcnn import SCALE_FACTOR_FIELD

__all__ = ["MMDetRCNN", "MMDetV1RCNN", "paste_pixel_masks", "MMDET_V1_TEST_SCALE"]

# The (longer, shorter) sides that the original GCNet configs fit test images in (img_scale):
# the paper's "shorter side of 800 pixels" (Section 5.1).
MMDET_V1_TEST_SCALE = (1333, 800)


@META_ARCH_REGISTRY.register()
class MMDetRCNN(GeneralizedRCNN):
    """detectron2's ``GeneralizedRCNN`` (same arguments) whose detections are mapped to the
    output size as mmdetection v2 and v3 map them (``rescale=True``): boxes divided by the
    resize factor of each axis in float32, masks pasted by bilinear sampling and binarised at
    0.5 (as detectron2's), and boxes that the clipping left without area kept, where detectron2's
    ``detector_postprocess`` drops them.
    """

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        if not do_postprocess:
            return results
        return [{"instances": self.postprocess(r, x)} for r, x in zip(results, batched_inputs)]

    @staticmethod
    def output_size(batched_input: Dict, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """The (height, width) the detections of an input of ``image_size`` are given at."""
        return batched_input.get("height", image_size[0]), batched_input.get("width", image_size[1])

    def scale_factors(self, batched_input: Dict, image_size: Tuple[int, int]) -> torch.Tensor:
        """[x, y, x, y] factors from the output size to the input's ``image_size``, float32 as
        mmdetection's ``scale_factor``."""
        height, width = self.output_size(batched_input, image_size)
        x, y = image_size[1] / width, image_size[0] / height
        return torch.tensor([x, y, x, y], dtype=torch.float32, device=self.device)

    def postprocess(self, instances: Instances, batched_input: Dict) -> Instances:
        """The detections of one image (model input ``batched_input``) at its output size."""
        size = self.output_size(batched_input, instances.image_size)
        boxes = instances.pred_boxes.tensor / self.scale_factors(batched_input, instances.image_size)
        result = Instances(size, **instances.get_fields())
        result.pred_boxes = Boxes(boxes)
        if result.has("pred_masks"):
            result.pred_masks = paste_masks_in_image(instances.pred_masks[:, 0], result.pred_boxes, size, 0.5)
        return result


def paste_pixel_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: Tuple[int, int], threshold: float = 0.5):
    """mmdetection v1's ``FCNMaskHead.get_seg_masks``: each (M, M) mask probability map resized
    by OpenCV (bilinear) to its box truncated to whole pixels (``x2 - x1 + 1`` by
    ``y2 - y1 + 1``, at least 1), binarised where it exceeds ``threshold``, and placed at the
    box's first pixel. Returns (N, height, width) bool masks."""
    height, width = image_size
    pasted = np.zeros((len(masks), height, width), dtype=bool)
    probabilities = masks.float().cpu().numpy()
    for i, (x1, y1, x2, y2) in enumerate(boxes.float().cpu().numpy().astype(np.int32)):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        mask = cv2.resize(probabilities[i], (int(w), int(h)), interpolation=cv2.INTER_LINEAR) > threshold
        top, left = max(y1, 0), max(x1, 0)  # v1's boxes lie in the image; others are cropped to it
        bottom, right = min(y1 + h, height), min(x1 + w, width)
        if bottom > top and right > left:
            pasted[i, top:bottom, left:right] = mask[top - y1 : bottom - y1, left - x1 : right - x1]
    return torch.from_numpy(pasted).to(masks.device)


@META_ARCH_REGISTRY.register()
class MMDetV1RCNN(MMDetRCNN):
    """:class:`MMDetRCNN` as mmdetection v1 (the original GCNet code) tests: the image's resize
    factor is one number, ``min(1333 / longer side, 800 / shorter side)`` of the original (its
    ``imrescale`` with ``test_scale``), which the boxes are divided by, after the final NMS in the
    original image (the proposals carry it to the :class:`MMDetV1FastRCNNOutputLayers`); masks
    are pasted by :func:`paste_pixel_masks`; and the boxes, whose far corner v1 counts as the last
    pixel inside, are returned in detectron2's continuous convention (``x2 + 1``, ``y2 + 1``),
    which is how v1 writes them to COCO (``w = x2 - x1 + 1``).

    When an input is not of the size that v1's resize makes of its output size (another resize,
    or an output size other than the original's), its boxes are divided by each axis's factor.

    Args:
        test_scale: the (longer, shorter) sides test images are resized to fit in, those of
            ``dataloader.test``'s resize (mmdetection's ``img_scale``).
    """

    @configurable
    def __init__(self, *, test_scale: Tuple[int, int] = MMDET_V1_TEST_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.test_scale = tuple(test_scale)

    def scale_factors(self, batched_input: Dict, image_size: Tuple[int, int]) -> torch.Tensor:
        height, width = self.output_size(batched_input, image_size)
        longer, shorter = self.test_scale
        scale = min(longer / max(height, width), shorter / min(height, width))
        if (int(height * scale + 0.5), int(width * scale + 0.5)) != tuple(image_size):
            return super().scale_factors(batched_input, image_size)
        return torch.full((4,), scale, dtype=torch.float32, device=self.device)

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        if detected_instances is not None or self.proposal_generator is None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, _ = self.proposal_generator(images, features, None)
        for p, x, size in zip(proposals, batched_inputs, images.image_sizes):
            p.set(SCALE_FACTOR_FIELD, self.scale_factors(x, size).expand(len(p), 4))
        results, _ = self.roi_heads(images, features, proposals, None)
        if not do_postprocess:
            return results
        return [{"instances": self.postprocess(r, x)} for r, x in zip(results, batched_inputs)]

    def postprocess(self, instances: Instances, batched_input: Dict) -> Instances:
        size = self.output_size(batched_input, instances.image_size)
        boxes = instances.pred_boxes.tensor / self.scale_factors(batched_input, instances.image_size)
        result = Instances(size, **instances.get_fields())
        if result.has("pred_masks"):
            result.pred_masks = paste_pixel_masks(instances.pred_masks[:, 0], boxes, size)
        result.pred_boxes = Boxes(boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0]))
        return result
