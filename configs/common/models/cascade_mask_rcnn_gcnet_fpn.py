"""Cascade Mask R-CNN with FPN on a (GC-)ResNet (Table 7): detectron2's three-stage cascade on
the backbone of ``mask_rcnn_gcnet_fpn.py``, with a mask head per stage whose masks are
averaged at test time and stage loss weights 1, 0.5, 0.25, as the paper's implementation."""

from gcnet.engine.config import get_detectron2_config
from gcnet.modeling import MultiMaskCascadeROIHeads

from .mask_rcnn_gcnet_fpn import model as _mask_rcnn

model = get_detectron2_config("common/models/cascade_rcnn.py").model
model.backbone = _mask_rcnn.backbone
model.input_format = _mask_rcnn.input_format
model.pixel_mean = _mask_rcnn.pixel_mean
model.pixel_std = _mask_rcnn.pixel_std
model.roi_heads._target_ = MultiMaskCascadeROIHeads
_mask_head = model.roi_heads.mask_head
_mask_head.num_classes = "${...num_classes}"  # one level deeper, inside the list
model.roi_heads.mask_head = [_mask_head for _ in range(3)]
model.roi_heads.stage_loss_weights = [1.0, 0.5, 0.25]
# Test-time scores: the mean of the stages' probabilities, as detectron2 ("mean_logits":
# mmdetection's softmax of the mean logits, which the converted zoo models set).
model.roi_heads.score_fusion = "mean_probabilities"
