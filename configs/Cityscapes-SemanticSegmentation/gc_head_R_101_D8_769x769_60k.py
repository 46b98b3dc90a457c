"""Table 12(a) "GC head" (and 12(b) "att+add"): a GC block (r4) in the head."""

from .fcn_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.context = "gc"
