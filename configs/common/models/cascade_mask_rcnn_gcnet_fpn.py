"""Cascade Mask R-CNN with FPN on a (GC-)ResNet (Table 7): detectron2's three-stage cascade
heads on the backbone of ``mask_rcnn_gcnet_fpn.py``."""
from detectron2.model_zoo import get_config

from .mask_rcnn_gcnet_fpn import model as _mask_rcnn

model = get_config("common/models/cascade_rcnn.py").model
model.backbone = _mask_rcnn.backbone
model.input_format = _mask_rcnn.input_format
model.pixel_mean = _mask_rcnn.pixel_mean
model.pixel_std = _mask_rcnn.pixel_std
