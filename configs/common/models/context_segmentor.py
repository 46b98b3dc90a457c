"""The semantic segmentation model of Section 5.4 (Table 12): a dilated ResNet-101 (output
stride 8, deep stem 64-64-128, SyncBN), the context head on c5 (here without a context
operator: the FCN baseline) and an auxiliary FCN head on c4 (512 channels, loss weight 0.4,
as in CCNet's recipe), with sliding-window inference on 769x769 windows every 513 pixels."""
from detectron2.config import LazyCall as L

from gcnet.modeling import ContextHead, ContextSegmentor, build_gcnet_resnet

model = L(ContextSegmentor)(
    backbone=L(build_gcnet_resnet)(
        depth=101,
        stem="deep",
        stem_channels=[64, 64, 128],
        norm="SyncBN",
        stride_in_1x1=False,
        dilations=[1, 1, 2, 4],
        contract_dilation=False,
        freeze_at=0,
        out_features=["res4", "res5"],
        gc_stages=[],
        gc=dict(
            ratio=1 / 4,
            pooling_type="att",
            fusion_types=["channel_add"],
            transform="bottleneck_ln_relu",
        ),
    ),
    sem_seg_head=L(ContextHead)(
        in_feature="res5",
        in_channels=2048,
        num_classes=19,
        channels=512,
        num_convs=2,
        concat_input=True,
        context="none",
        gc=dict(ratio=1 / 4, pooling_type="att", fusion_types=["channel_add"]),
        # Table 12(a) counts 71.22M parameters for the NL head: C' = C / 4 (C / 2 gives 71.48M).
        nl_reduction=4,
        nl_mode="embedded_gaussian",  # Table 4 compares the four instantiations
        norm="SyncBN",
        dropout=0.1,
        ignore_value=255,
        loss_weight=1.0,
        align_corners=False,
    ),
    auxiliary_head=L(ContextHead)(
        in_feature="res4",
        in_channels=1024,
        num_classes="${..sem_seg_head.num_classes}",
        channels=512,
        num_convs=1,
        concat_input=False,
        context="none",
        norm="SyncBN",
        dropout=0.1,
        ignore_value="${..sem_seg_head.ignore_value}",
        loss_weight=0.4,
        loss_name="loss_sem_seg_aux",
        align_corners="${..sem_seg_head.align_corners}",
    ),
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    inference=dict(mode="slide", crop_size=[769, 769], stride=[513, 513], scales=[1.0], flip=False),
)
