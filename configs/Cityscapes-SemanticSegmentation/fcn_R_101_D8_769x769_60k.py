"""Table 12(a) baseline: FCN (the head without a context operator) on a dilated ResNet-101 with
the paper's Cityscapes recipe (Section 5.4, after CCNet): 769x769 crops, 8 images per batch,
60k iterations, SyncBN, SGD lr 0.01 with poly decay, sliding-window evaluation."""

from ..common.cityscapes_schedule import lr_multiplier_poly as lr_multiplier
from ..common.data.cityscapes_sem_seg import dataloader
from ..common.models.context_segmentor import model
from ..common.optim import SGD as optimizer
from ..common.train import train

optimizer.lr = 0.01
optimizer.weight_decay = 5e-4
train.max_iter = 60000
train.eval_period = 10000
train.checkpointer.period = 5000
train.best_checkpoint.metric = "sem_seg/mIoU"
train.init_checkpoint = "gcnet://ImageNetPretrained/mit/R-101-deepbase"
