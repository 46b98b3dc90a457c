"""Table 12(a) "NL Head": a non-local block (embedded Gaussian) in the head."""

from .fcn_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.context = "nl"
