"""Table 5(f) "att+scale": GC blocks (r16) in c3-c5 with attention pooling and rescaling fusion."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.gc.pooling_type = "att"
model.backbone.bottom_up.gc.fusion_types = ["channel_mul"]
