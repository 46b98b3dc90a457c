"""Cityscapes fine semantic segmentation loaders with the paper's augmentation (Section 5.4,
after CCNet): random scale 0.5-2.0 of the 2048x1024 images, 769x769 crops (no class over 75%
of a crop), horizontal flip, 8 images per batch. Evaluation on the full-resolution val images
with detectron2's SemSegEvaluator (mIoU, fwIoU, pixel accuracy) and the official Cityscapes
scripts (class/category IoU and iIoU)."""

from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import SemSegEvaluator

from gcnet.data import SemSegDatasetMapper
from gcnet.evaluation import CityscapesPixelLevelEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gcnet_cityscapes_fine_sem_seg_train", filter_empty=False),
    mapper=L(SemSegDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeScale)(min_scale=0.5, max_scale=2.0, target_height=1024, target_width=2048),
            L(T.RandomCrop_CategoryAreaConstraint)(
                crop_type="absolute",
                crop_size=(769, 769),
                single_category_max_area=0.75,
                ignored_category=255,
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        num_classes=19,
        ignore_value=255,
    ),
    total_batch_size=8,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gcnet_cityscapes_fine_sem_seg_val", filter_empty=False),
    mapper=L(SemSegDatasetMapper)(is_train=False, augmentations=[], image_format="RGB", test_ratios=None),
    num_workers=4,
)

dataloader.evaluator = [
    L(SemSegEvaluator)(dataset_name="${...test.dataset.names}"),
    L(CityscapesPixelLevelEvaluator)(dataset_name="${...test.dataset.names}"),
]
