"""mmsegmentation's gcnet_r50-d8_512x1024_80k_cityscapes: 80k iterations."""

from .mmseg_gcnet_R_50_D8_512x1024_40k import dataloader, lr_multiplier, model, optimizer, train

train.max_iter = 80000
train.eval_period = 8000
train.checkpointer.period = 8000
