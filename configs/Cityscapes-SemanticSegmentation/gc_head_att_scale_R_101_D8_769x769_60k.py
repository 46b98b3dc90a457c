"""Table 12(b) "att+scale": the GC head with attention pooling and rescaling fusion."""

from .gc_head_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.gc.pooling_type = "att"
model.sem_seg_head.gc.fusion_types = ["channel_mul"]
