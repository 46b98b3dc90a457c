"""Table 12(b) "avg+scale": the GC head with average pooling and rescaling fusion."""

from .gc_head_R_101_D8_769x769_60k import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.gc.pooling_type = "avg"
model.sem_seg_head.gc.fusion_types = ["channel_mul"]
