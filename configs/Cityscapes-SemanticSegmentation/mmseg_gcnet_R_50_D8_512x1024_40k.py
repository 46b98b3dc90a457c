"""mmsegmentation's gcnet_r50-d8_512x1024_40k_cityscapes: its GCNet model
(``../common/models/mmseg_gcnet.py``) and schedule, 512x1024 crops, 8 images per batch, 40k
iterations."""
from ..common.data.cityscapes_sem_seg import dataloader
from ..common.mmseg_schedule import lr_multiplier, optimizer, train
from ..common.models.mmseg_gcnet import model

# The shared augmentations (configs/common/data/cityscapes_sem_seg.py): resize, crop, flip.
dataloader.train.mapper.augmentations[1].crop_size = (512, 1024)
train.max_iter = 40000
train.eval_period = 4000
train.checkpointer.period = 4000
