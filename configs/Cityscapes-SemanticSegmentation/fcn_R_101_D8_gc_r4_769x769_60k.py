"""Table 12(a) "GC backbone (c3-c5)": GC blocks (r4) in every residual block of c3-c5, FCN head."""

from .fcn_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.context = "gc"
