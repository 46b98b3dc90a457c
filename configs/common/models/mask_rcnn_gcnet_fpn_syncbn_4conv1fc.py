"""Mask R-CNN with SyncBN in the backbone, FPN and heads, and a 4conv1fc box head
(Table 6(a), last rows). The heads use detectron2's empty-batch-safe SyncBN variant
("naiveSyncBN_N"): a GPU may hold no RoI of some image batch."""

from detectron2.config import LazyCall as L

from gcnet.modeling import resolve_norm

from .mask_rcnn_gcnet_fpn import model

model.backbone.bottom_up.norm = "SyncBN"
model.backbone.norm = L(resolve_norm)(norm="SyncBN")
model.roi_heads.box_head.conv_dims = [256, 256, 256, 256]
model.roi_heads.box_head.fc_dims = [1024]
model.roi_heads.box_head.conv_norm = "naiveSyncBN_N"
model.roi_heads.mask_head.conv_norm = "naiveSyncBN_N"
