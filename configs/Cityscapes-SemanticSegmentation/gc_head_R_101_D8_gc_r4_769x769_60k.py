"""Table 12(a) "GC backbone + GC Head"."""

from .gc_head_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.context = "gc"
