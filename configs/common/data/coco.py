"""COCO 2017 instance segmentation loaders with the paper's input (Section 5.1): RGB, shorter
side 800 (longer side at most 1333), horizontal flip, 16 images per batch."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from gcnet.engine.config import get_detectron2_config

dataloader = get_detectron2_config("common/data/coco.py").dataloader
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
