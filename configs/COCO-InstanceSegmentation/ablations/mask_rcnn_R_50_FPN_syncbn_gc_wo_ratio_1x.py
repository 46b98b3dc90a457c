"""Table 5(d) "w/o ratio": the SNL transform, one 1x1 conv C -> C, in every block of c3-c5."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.gc.transform = "linear"
