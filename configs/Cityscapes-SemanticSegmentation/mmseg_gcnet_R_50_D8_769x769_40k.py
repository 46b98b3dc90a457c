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
dataloader.train.mapper.augmentations = [
    L(T.ResizeScale)(min_scale=0.5, max_scale=2.0, target_height=1025, target_width=2049),
    L(T.RandomCrop_CategoryAreaConstraint)(
        crop_type="absolute",
        crop_size=(769, 769),
        single_category_max_area=0.75,
        ignored_category=255,
    ),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(1025, 2049))]
