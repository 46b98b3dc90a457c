"""What a prediction run writes for an image: a detector's instances as COCO results (boxes,
scores, category ids of the model's dataset, RLE masks), a semantic segmentation model's
classes as a label map; and the categories of the model, for the index of the run."""

import json
import logging
import os
from typing import Dict, List

import cv2
import numpy as np
import torch

from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from gcnet.data.coco import is_placeholder_category

__all__ = ["dataset_category_ids", "instance_results", "label_map", "label_dtype", "encode_png", "IGNORE_LABELS"]

logger = logging.getLogger(__name__)

# The value of a label map's pixels below --confidence-threshold, by the label map's dtype.
IGNORE_LABELS = {np.uint8: 255, np.uint16: 65535}


def _categories_of_json(json_file: str) -> List[int]:
    """The category ids of a COCO file that detectron2 maps to classes 0..K-1: sorted, without
    placeholder categories (as :func:`gcnet.data.load_coco_instances` maps them)."""
    with open(json_file, encoding="utf-8") as f:
        categories = json.load(f).get("categories", [])
    return sorted(c["id"] for c in categories if not is_placeholder_category(c.get("name")))


def dataset_category_ids(metadata) -> List[int]:
    """The category id in the model's dataset of each of its classes (``thing_classes``): the
    inverse of the metadata's ``thing_dataset_id_to_contiguous_id`` (COCO's ids 1..90), else
    the ids of its COCO file (``json_file``, when it is on disk and has as many categories),
    else 1..K, as a COCO file of the classes in their order would have them."""
    classes = metadata.get("thing_classes", None) or []
    mapping = metadata.get("thing_dataset_id_to_contiguous_id", None)
    if mapping:
        inverse = {contiguous: dataset_id for dataset_id, contiguous in mapping.items()}
        return [inverse[i] for i in range(len(classes))]
    json_file = metadata.get("json_file", None)
    if json_file and os.path.isfile(json_file):
        ids = _categories_of_json(json_file)
        if len(ids) == len(classes):
            return ids
    logger.info(f"{metadata.name}: no category ids known (its COCO file is not here); writing 1..{len(classes)}")
    return list(range(1, len(classes) + 1))


def instance_results(instances, image_id: int, category_ids: List[int]) -> List[Dict]:
    """COCO results of an image's ``Instances`` (at the image's size, on any device): one dict
    per instance with ``image_id``, ``category_id`` (of the dataset), ``bbox`` (XYWH),
    ``score`` and, with masks, ``segmentation`` (an RLE with a string ``counts``), as
    detectron2's ``COCOEvaluator`` writes them."""
    results = instances_to_coco_json(instances.to("cpu"), image_id)
    for result in results:
        result["category_id"] = category_ids[result["category_id"]]
    return results


def label_dtype(num_classes: int) -> type:
    """The dtype of a label map of ``num_classes`` classes and an ignore label above them:
    uint8 up to 255 classes, else uint16."""
    return np.uint8 if num_classes <= IGNORE_LABELS[np.uint8] else np.uint16


def label_map(probabilities: torch.Tensor, threshold: float = 0.0) -> np.ndarray:
    """The (H, W) class map of (K, H, W) class probabilities (:func:`label_dtype`); pixels whose
    highest probability is below ``threshold`` get :data:`IGNORE_LABELS`."""
    dtype = label_dtype(probabilities.shape[0])
    confidence, classes = probabilities.max(dim=0)
    labels = classes.cpu().numpy().astype(dtype)
    if threshold > 0:
        labels[(confidence < threshold).cpu().numpy()] = IGNORE_LABELS[dtype]
    return labels


def encode_png(labels: np.ndarray) -> bytes:
    """A label map as PNG bytes (8 or 16 bits a pixel, as its dtype)."""
    ok, encoded = cv2.imencode(".png", labels)
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {labels.dtype} label map of shape {labels.shape} as PNG")
    return encoded.tobytes()
