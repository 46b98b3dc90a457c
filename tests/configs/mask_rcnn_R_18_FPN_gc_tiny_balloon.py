"""The quick-start model made small for the training tests: GC-ResNet-18 with a 64-channel FPN
and heads, 128-160 pixel images (160 at test time), no evaluation."""

from detectron2.layers import ShapeSpec

from ...configs.quick_schedules.mask_rcnn_R_50_FPN_gc_r16_balloon import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.depth = 18
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
model.roi_heads.box_head.fc_dims = [128, 128]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=128)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, width=14, height=14)
model.roi_heads.mask_head.conv_dims = [64, 64]
dataloader.train.mapper.augmentations[0].short_edge_length = (128, 160)
dataloader.train.mapper.augmentations[0].max_size = 256
dataloader.train.num_workers = 0
dataloader.test.mapper.augmentations[0].short_edge_length = 160
dataloader.test.mapper.augmentations[0].max_size = 256
del dataloader.evaluator

train.init_checkpoint = ""
optimizer.lr = 0.0025
