"""mmsegmentation's gcnet_r50-d8_512x512_80k_ade20k: its GCNet model
(``../common/models/mmseg_gcnet.py``) with 150 classes and schedule, 512x512 crops, 16 images
per batch, 80k iterations."""

from ..common.data.ade20k_sem_seg import dataloader
from ..common.mmseg_schedule import lr_multiplier, optimizer, train
from ..common.models.mmseg_gcnet import model

model.sem_seg_head.num_classes = 150
train.max_iter = 80000
train.eval_period = 8000
train.checkpointer.period = 8000
