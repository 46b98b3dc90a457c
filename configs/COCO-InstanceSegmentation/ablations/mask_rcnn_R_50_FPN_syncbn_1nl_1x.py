"""Table 5(a) "+1 NL": one non-local (embedded Gaussian) block right before the last residual
block of c4."""

from ..mask_rcnn_R_50_FPN_syncbn_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.extra_context = "nl"
