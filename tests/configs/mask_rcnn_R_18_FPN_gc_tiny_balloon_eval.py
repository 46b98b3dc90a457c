"""The tools' tiny model (mask_rcnn_R_18_FPN_gc_tiny_balloon.py) with the quick start's
evaluation (COCO AP on balloon_val), for the tests of runs that evaluate."""

from ...configs.common.data.coco import dataloader as coco
from .mask_rcnn_R_18_FPN_gc_tiny_balloon import dataloader, lr_multiplier, model, optimizer, train

dataloader.evaluator = coco.evaluator
train.best_checkpoint.metric = "bbox/AP"
model.roi_heads.box_predictor.test_topk_per_image = 5  # random weights detect everywhere: keep evaluation short
