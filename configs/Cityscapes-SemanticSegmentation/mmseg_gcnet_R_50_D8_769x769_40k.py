"""mmsegmentation's gcnet_r50-d8_769x769_40k_cityscapes: as the 512x1024 model, with images
scaled to 2049x1025, 769x769 crops, align_corners=True and sliding-window evaluation (769x769
windows, stride 513)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

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
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(1025, 2049))]
