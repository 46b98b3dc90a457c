"""Pascal VOC 2012 + SBD aug (21 classes with the background) semantic segmentation loaders:
mmsegmentation's ``configs/_base_/datasets/pascal_voc12_aug.py`` has the pipeline of ADE20K
(``ade20k_sem_seg.py``), on ``voc_2012_aug_sem_seg_train`` (10582 images) and
``voc_2012_sem_seg_val`` (1449 images)."""

from .ade20k_sem_seg import dataloader

dataloader.train.dataset.names = "voc_2012_aug_sem_seg_train"
dataloader.train.mapper.num_classes = 21
dataloader.test.dataset.names = "voc_2012_sem_seg_val"
