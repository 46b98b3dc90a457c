"""Table 12(a) "SNL Head": a simplified non-local block in the head."""

from .fcn_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.context = "snl"
