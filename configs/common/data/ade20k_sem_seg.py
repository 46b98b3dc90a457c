"""ADE20K (150 classes) semantic segmentation loaders with mmsegmentation's pipeline
(``configs/_base_/datasets/ade20k.py``), on the Cityscapes loaders' crop, flip and mapper:
images scaled by 0.5-2.0 around a shorter side of 512 (longer side at most 4x that), 512x512
crops (no class over 75% of a crop), horizontal flip, 16 images per batch; evaluation of the
val images resized as mmsegmentation does (OpenCV, to a shorter side of 512 and a longer side
of at most 2048), with mmsegmentation's mIoU on the original label maps. The datasets are
detectron2's builtin ``ade20k_sem_seg_{train,val}`` (``python tools/prepare_datasets.py
ade20k`` writes their label maps)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from gcnet.data import OpenCVResizeShortestEdge
from gcnet.evaluation import MMSegSemSegEvaluator

from .cityscapes_sem_seg import dataloader

dataloader.train.dataset.names = "ade20k_sem_seg_train"
# mmsegmentation's RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0)) for images whose
# longer side is at most 4x the shorter one.
dataloader.train.mapper.augmentations[0] = L(T.ResizeShortestEdge)(
    short_edge_length=(256, 1024), max_size=4096, sample_style="range"
)
dataloader.train.mapper.augmentations[1].crop_size = (512, 512)
dataloader.train.mapper.num_classes = 150
dataloader.train.total_batch_size = 16
dataloader.test.dataset.names = "ade20k_sem_seg_val"
# mmsegmentation's Resize(scale=(2048, 512), keep_ratio=True)
dataloader.test.mapper.augmentations = [L(OpenCVResizeShortestEdge)(short_edge_length=512, max_size=2048)]
dataloader.evaluator = L(MMSegSemSegEvaluator)(dataset_name="${..test.dataset.names}")
