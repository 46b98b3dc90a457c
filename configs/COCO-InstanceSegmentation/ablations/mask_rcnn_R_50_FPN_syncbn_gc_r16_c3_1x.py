"""Table 5(c) "c3": GC blocks (r16) in stage c3 only."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context_stages = ["res3"]
