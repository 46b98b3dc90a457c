"""Table 5(d) "r16": two 1x1 convs (ratio 16) without LayerNorm or ReLU, in c3-c5."""

from ..mask_rcnn_R_50_FPN_syncbn_gc_r16_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.gc.transform = "bottleneck"
