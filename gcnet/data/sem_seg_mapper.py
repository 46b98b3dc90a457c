"""Dataset mapper for semantic segmentation that checks each image against its label map."""

import copy
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

import detectron2.data.transforms as T
from detectron2.data import detection_utils as utils

from gcnet.modeling.sem_seg.segmentor import MULTI_SCALE_IMAGES

__all__ = ["SemSegDatasetMapper"]


class SemSegDatasetMapper:
    """Reads an image and, in training, its label map (``sem_seg_file_name``: one class id per
    pixel); checks that they have the same size and that every label is a class id or the
    ignore value; applies the augmentations to both.

    Returns detectron2's model input: ``image`` (C, H, W) uint8 tensor, ``sem_seg`` (H, W)
    int64 tensor in training, and the dataset dict's ``file_name``, ``height``, ``width``.

    Args:
        test_ratios: at test time, also the original image resized by each of these ratios of
            the test resize's scale (``"multi_scale_images"``, a list of (C, h, w) tensors), as
            mmsegmentation's ``MultiScaleFlipAug`` with ``img_ratios`` makes its test images;
            the augmentations must then hold one resize that can be rescaled
            (:class:`~gcnet.data.OpenCVResizeShortestEdge`). ``ContextSegmentor`` predicts from
            those images.
    """

    def __init__(
        self,
        is_train: bool,
        augmentations: List,
        image_format: str = "RGB",
        num_classes: int = 19,
        ignore_value: int = 255,
        test_ratios: Optional[Sequence[float]] = None,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.ratio_augmentations = None
        if test_ratios is not None and not is_train:
            self.ratio_augmentations = [self._rescaled(augmentations, r) for r in test_ratios]
        self.image_format = image_format
        self.num_classes = num_classes
        self.ignore_value = ignore_value

    @staticmethod
    def _rescaled(augmentations: List, ratio: float) -> T.AugmentationList:
        """``augmentations`` with their resize rescaled by ``ratio``."""
        resizes = [i for i, a in enumerate(augmentations) if hasattr(a, "rescaled")]
        if len(resizes) != 1:
            raise ValueError(
                "test_ratios rescale the test resize: the augmentations must hold one resize with rescaled() "
                f"(OpenCVResizeShortestEdge), got {[type(a).__name__ for a in augmentations]}"
            )
        rescaled = list(augmentations)
        rescaled[resizes[0]] = augmentations[resizes[0]].rescaled(ratio)
        return T.AugmentationList(rescaled)

    def _read_label(self, label_file: str, image_file: str, image: np.ndarray) -> np.ndarray:
        label = utils.read_image(label_file)
        if label.ndim != 2:
            raise ValueError(f"{label_file}: expected a single-channel label map, got shape {label.shape}")
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{label_file}: label map is {label.shape[1]}x{label.shape[0]} but its image "
                f"{image_file} is {image.shape[1]}x{image.shape[0]}"
            )
        counts = np.bincount(label.ravel().astype(np.int64), minlength=max(256, self.num_classes))
        counts[: self.num_classes] = 0
        counts[self.ignore_value] = 0
        if counts.any():
            raise ValueError(
                f"{label_file}: label values {np.flatnonzero(counts).tolist()} are neither class ids "
                f"0..{self.num_classes - 1} nor the ignore value {self.ignore_value}"
            )
        return label.astype(np.uint8)  # the resize of detectron2's transforms needs uint8 maps

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        label_file = dataset_dict.pop("sem_seg_file_name", None)
        label = self._read_label(label_file, dataset_dict["file_name"], image) if self.is_train else None
        aug_input = T.AugInput(image, sem_seg=label)
        self.augmentations(aug_input)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        if label is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        if self.ratio_augmentations is not None:
            dataset_dict[MULTI_SCALE_IMAGES] = [self._apply(a, image) for a in self.ratio_augmentations]
        return dataset_dict

    @staticmethod
    def _apply(augmentations: T.AugmentationList, image: np.ndarray) -> torch.Tensor:
        aug_input = T.AugInput(image)
        augmentations(aug_input)
        return torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
