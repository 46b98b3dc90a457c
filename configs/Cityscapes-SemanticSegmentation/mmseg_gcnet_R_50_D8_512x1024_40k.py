"""mmsegmentation's gcnet_r50-d8_512x1024_40k_cityscapes: its GCNet model
(``../common/models/mmseg_gcnet.py``) and schedule, 512x1024 crops, 8 images per batch, 40k
iterations; its test-time resize (OpenCV, to fit 2048x1024: the Cityscapes images stay as they
are) and mIoU."""

from detectron2.config import LazyCall as L

from gcnet.data import OpenCVResizeShortestEdge
from gcnet.evaluation import MMSegSemSegEvaluator

from ..common.data.cityscapes_sem_seg import dataloader
from ..common.mmseg_schedule import lr_multiplier, optimizer, train
from ..common.models.mmseg_gcnet import model

# The shared augmentations (configs/common/data/cityscapes_sem_seg.py): resize, crop, flip.
dataloader.train.mapper.augmentations[1].crop_size = (512, 1024)
# mmsegmentation's Resize(scale=(2048, 1024), keep_ratio=True)
dataloader.test.mapper.augmentations = [L(OpenCVResizeShortestEdge)(short_edge_length=1024, max_size=2048)]
dataloader.evaluator[0] = L(MMSegSemSegEvaluator)(dataset_name="${...test.dataset.names}")
train.max_iter = 40000
train.eval_period = 4000
train.checkpointer.period = 4000
