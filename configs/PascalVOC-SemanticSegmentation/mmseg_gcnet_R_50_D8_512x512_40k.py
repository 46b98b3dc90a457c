"""mmsegmentation's gcnet_r50-d8_512x512_40k_voc12aug: 40k iterations."""

from .mmseg_gcnet_R_50_D8_512x512_20k import dataloader, lr_multiplier, model, optimizer, train

train.max_iter = 40000
train.eval_period = 4000
train.checkpointer.period = 4000
