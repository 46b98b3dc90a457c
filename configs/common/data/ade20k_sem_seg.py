"""ADE20K (150 classes) semantic segmentation loaders with mmsegmentation's pipeline
(``configs/_base_/datasets/ade20k.py``): images scaled by 0.5-2.0 around a shorter side of 512
(longer side at most 4x that), 512x512 crops (no class over 75% of a crop), horizontal flip, 16
images per batch; evaluation of the val images scaled to a shorter side of 512 (longer side at
most 2048), with detectron2's SemSegEvaluator on the original label maps. The datasets are
detectron2's builtin ``ade20k_sem_seg_{train,val}`` (``python tools/prepare_datasets.py
ade20k`` writes their label maps)."""
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

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ade20k_sem_seg_train", filter_empty=False),
    mapper=L(SemSegDatasetMapper)(
        is_train=True,
        augmentations=[
            # mmsegmentation's RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0)) for
            # images whose longer side is at most 4x the shorter one.
            L(T.ResizeShortestEdge)(short_edge_length=(256, 1024), max_size=4096, sample_style="range"),
            L(T.RandomCrop_CategoryAreaConstraint)(
                crop_type="absolute",
                crop_size=(512, 512),
                single_category_max_area=0.75,
                ignored_category=255,
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        num_classes=150,
        ignore_value=255,
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ade20k_sem_seg_val", filter_empty=False),
    mapper=L(SemSegDatasetMapper)(
        is_train=False,
        # mmsegmentation's Resize(scale=(2048, 512), keep_ratio=True)
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=512, max_size=2048)],
        image_format="RGB",
    ),
    num_workers=4,
)

dataloader.evaluator = L(SemSegEvaluator)(dataset_name="${..test.dataset.names}")
