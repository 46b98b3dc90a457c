"""Quick start: a GC-ResNet-50-FPN Mask R-CNN (GC r16 in c3-c5) fine-tuned on the balloon set.

Small images (shorter side 320-384), 2 per batch and 200 iterations: 25 CPU-minutes (README,
Quick start, says how it was measured). Evaluates on balloon_val (COCO AP) at the end and
writes output/balloon_gc_r16/model_final.pth (model_best.pth is a hard link to it).

    python tools/prepare_datasets.py balloon
    python tools/train_net.py --config-file configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..common.coco_schedule import multistep_schedule
from ..common.data.coco import dataloader
from ..common.models.mask_rcnn_gcnet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.backbone.bottom_up.context = "gc"
model.backbone.bottom_up.gc.ratio = 1 / 16
model.roi_heads.num_classes = 1
model.roi_heads.batch_size_per_image = 128

dataloader.train.dataset.names = "balloon_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(320, 352, 384), max_size=640, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 2
dataloader.test.dataset.names = "balloon_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=352, max_size=640),
]
dataloader.test.num_workers = 2

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "output/balloon_gc_r16"
train.max_iter = 200
train.eval_period = 0  # evaluate once, at the end
train.log_period = 20
train.checkpointer.period = 100
train.checkpointer.max_to_keep = 1  # model_final replaces model_0000099 at the end
train.seed = 0

optimizer.lr = 0.01
lr_multiplier = multistep_schedule(200, (140, 180), warmup_iters=50)
