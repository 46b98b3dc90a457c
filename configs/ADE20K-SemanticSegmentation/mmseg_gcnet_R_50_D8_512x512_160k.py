"""mmsegmentation's gcnet_r50-d8_512x512_160k_ade20k: 160k iterations."""

from .mmseg_gcnet_R_50_D8_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

train.max_iter = 160000
train.eval_period = 16000
train.checkpointer.period = 16000
