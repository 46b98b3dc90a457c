"""mmsegmentation's schedules (``configs/_base_/schedules/schedule_{20k,40k,80k,160k}.py``)
with its ResNet-V1c start: SGD lr 0.01 (momentum 0.9, weight decay 5e-4 on every parameter),
poly decay (power 0.9) to lr 1e-4, no warm-up, from ``open-mmlab://resnet50_v1c``; the
configs set ``train.max_iter``."""

from .cityscapes_schedule import lr_multiplier_poly as lr_multiplier
from .optim import SGD as optimizer
from .train import train

optimizer.lr = 0.01
optimizer.weight_decay = 5e-4
lr_multiplier.end_value = 0.01  # min_lr 1e-4 at lr 0.01
train.best_checkpoint.metric = "sem_seg/mIoU"
train.init_checkpoint = "gcnet://ImageNetPretrained/open-mmlab/R-50-V1c"
