"""Table 5(e) "ratio 32": GC blocks with bottleneck ratio 1/32 in c3-c5."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.gc.ratio = 1 / 32
