"""mmsegmentation's gcnet_r50-d8_769x769_40k_cityscapes: as the 512x1024 model, with images
scaled to 2049x1025 (in training; at test time resized to fit it, as mmsegmentation does),
769x769 crops, align_corners=True and sliding-window evaluation (769x769 windows, stride 513)."""

from .mmseg_gcnet_R_50_D8_512x1024_40k import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.sem_seg_head.align_corners = True
model.inference.update(mode="slide", crop_size=[769, 769], stride=[513, 513])
# The shared augmentations (configs/common/data/cityscapes_sem_seg.py): resize, crop, flip.
dataloader.train.mapper.augmentations[0].update(target_height=1025, target_width=2049)
dataloader.train.mapper.augmentations[1].crop_size = (769, 769)
# mmsegmentation's Resize(scale=(2049, 1025), keep_ratio=True)
dataloader.test.mapper.augmentations[0].update(short_edge_length=1025, max_size=2049)
