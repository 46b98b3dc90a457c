"""Table 5(b) "afterAdd": GC blocks (r16) in c3-c5 after the residual add and ReLU."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context_position = "afterAdd"
