"""The semantic segmentation model of Section 5.4 (Table 12): a dilated ResNet-101 (output
stride 8, deep stem 64-64-128, SyncBN; GC blocks of ratio 1/4 where a config adds them), the
context head on c5 (here without a context operator: the FCN baseline) and an auxiliary FCN
head on c4 (512 channels, loss weight 0.4, as in CCNet's recipe), with sliding-window inference
on 769x769 windows every 513 pixels. Every other option is at its default in
``gcnet.modeling`` (``build_gcnet_resnet``, ``ContextHead``, ``ContextSegmentor``)."""

from detectron2.config import LazyCall as L

from gcnet.modeling import ContextHead, ContextSegmentor, build_gcnet_resnet, gcnet_resnet_defaults, option_defaults
from gcnet.modeling.sem_seg import AUXILIARY_HEAD

model = L(ContextSegmentor)(
    backbone=L(build_gcnet_resnet)(**gcnet_resnet_defaults()),
    sem_seg_head=L(ContextHead)(**option_defaults(ContextHead)),
    auxiliary_head=L(ContextHead)(**dict(option_defaults(ContextHead), **AUXILIARY_HEAD)),
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    inference=option_defaults(ContextSegmentor)["inference"],
)
model.backbone.update(depth=101, stem="deep", stem_channels=[64, 64, 128], norm="SyncBN", dilations=[1, 1, 2, 4])
model.backbone.out_features = ["res4", "res5"]
model.backbone.gc.ratio = 1 / 4
model.sem_seg_head.update(in_feature="res5", in_channels=2048, num_classes=19, context="none")
# Table 12(a) counts 71.22M parameters for the NL head: C' = C / 4 (C / 2 gives 71.48M).
model.sem_seg_head.nl.reduction = 4
model.auxiliary_head.update(in_channels=1024, channels=512, num_classes="${..sem_seg_head.num_classes}")
model.auxiliary_head.update(
    ignore_value="${..sem_seg_head.ignore_value}", align_corners="${..sem_seg_head.align_corners}"
)
model.inference.mode = "slide"
