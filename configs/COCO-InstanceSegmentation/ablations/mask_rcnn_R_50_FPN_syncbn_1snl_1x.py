"""Table 5(a) "+1 SNL": one simplified non-local block right before the last residual block
of c4."""

from ..mask_rcnn_R_50_FPN_syncbn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.extra_context = "snl"
