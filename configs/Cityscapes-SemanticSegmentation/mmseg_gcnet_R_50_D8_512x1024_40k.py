"""mmsegmentation's gcnet_r50-d8_512x1024_40k_cityscapes: ResNet-50-V1c (deep stem 32-32-64,
contract dilation), GC head (r4), auxiliary head with 256 channels, 512x1024 crops, 40k
iterations, poly decay to lr 1e-4, whole-image evaluation, align_corners=False."""
from .gc_head_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.depth = 50
model.backbone.stem_channels = [32, 32, 64]
model.backbone.contract_dilation = True
model.auxiliary_head.channels = 256
model.inference = dict(mode="whole", scales=[1.0], flip=False)
# The shared augmentations (configs/common/data/cityscapes_sem_seg.py): resize, crop, flip.
dataloader.train.mapper.augmentations[1].crop_size = (512, 1024)
lr_multiplier.end_value = 0.01  # min_lr 1e-4 at lr 0.01
train.max_iter = 40000
train.eval_period = 4000
train.checkpointer.period = 4000
train.init_checkpoint = "gcnet://ImageNetPretrained/open-mmlab/R-50-V1c"
