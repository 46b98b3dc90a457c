"""mmsegmentation's gcnet_r50-d8_512x512_20k_voc12aug: its GCNet model
(``../common/models/mmseg_gcnet.py``) with 21 classes and schedule, 512x512 crops, 16 images
per batch, 20k iterations."""

from ..common.data.voc12_aug_sem_seg import dataloader
from ..common.mmseg_schedule import lr_multiplier, optimizer, train
from ..common.models.mmseg_gcnet import model

model.sem_seg_head.num_classes = 21
train.max_iter = 20000
train.eval_period = 2000
train.checkpointer.period = 2000
