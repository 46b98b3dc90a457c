"""The upstream converters on state dicts with the exact upstream layouts: every key placed,
every parameter filled, values where they belong, and the same outputs as the upstream modules."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from detectron2.config import LazyConfig, instantiate

from gcnet.model_zoo import CONVERTERS, UnconvertedKeysError

from ..helpers import CONFIGS
from .upstream_layouts import mmcv_context_block, mmdet_checkpoint, mmseg_checkpoint, torchvision_resnet

COCO = CONFIGS / "COCO-InstanceSegmentation"
CITYSCAPES = CONFIGS / "Cityscapes-SemanticSegmentation"


def build(config):
    return instantiate(LazyConfig.load(str(config)).model).eval()


def load_exactly(model, converted):
    """Load a converted checkpoint and check it names exactly the model's parameters."""
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(converted["model"]) == expected, (
        sorted(expected - set(converted["model"]))[:5],
        sorted(set(converted["model"]) - expected)[:5],
    )
    model.load_state_dict(converted["model"], strict=False)
    return model


DETECTION_FAMILIES = [
    # upstream version, model config, checkpoint layout
    ("v2", "mask_rcnn_R_50_FPN_1x.py", dict(depth=50)),
    ("v2", "mask_rcnn_R_50_FPN_gc_r16_1x.py", dict(depth=50, gc_ratio=1 / 16)),
    ("v2", "mask_rcnn_R_101_FPN_syncbn_gc_r4_1x.py", dict(depth=101, gc_ratio=1 / 4)),
    ("v2", "mask_rcnn_X_101_32x4d_FPN_syncbn_gc_r16_1x.py", dict(depth=101, groups=32, width=4, gc_ratio=1 / 16)),
    (
        "v2",
        "cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_dcn_gc_r4_1x.py",
        dict(depth=101, groups=32, width=4, gc_ratio=1 / 4, dcn=True, cascade=True),
    ),
    ("v1", "mask_rcnn_R_50_FPN_gc_r16_1x.py", dict(depth=50, gc_ratio=1 / 16)),
    ("v1", "mask_rcnn_R_50_FPN_syncbn_4conv1fc_gc_r4_1x.py", dict(depth=50, gc_ratio=1 / 4, syncbn_heads=True)),
    (
        "v1",
        "cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_dcn_gc_r16_1x.py",
        dict(depth=101, groups=32, width=4, gc_ratio=1 / 16, dcn=True, cascade=True),
    ),
]


@pytest.mark.parametrize("version,config,layout", DETECTION_FAMILIES, ids=lambda v: str(v)[:40])
def test_mmdet_checkpoints_fill_the_model(version, config, layout):
    upstream = mmdet_checkpoint(version, **layout)["state_dict"]
    converted = CONVERTERS["mmdet" if version == "v2" else "mmdet_v1"]({"state_dict": upstream})
    assert converted["matching_heuristics"] is False
    model = load_exactly(build(COCO / config), converted)
    state = model.state_dict()
    prefix = "roi_head." if version == "v2" else ""
    stage = ".2" if layout.get("cascade") else ""
    cls, reg = upstream[f"{prefix}bbox_head{stage}.fc_cls.weight"], upstream[f"{prefix}bbox_head{stage}.fc_reg.weight"]
    logits = upstream[f"{prefix}mask_head{stage}.conv_logits.weight"]
    ours = lambda name: state[f"roi_heads.{name}".replace("STAGE", stage)]  # noqa: E731
    if version == "v2":  # background already last
        torch.testing.assert_close(ours("box_predictorSTAGE.cls_score.weight"), cls)
        torch.testing.assert_close(ours("mask_headSTAGE.predictor.weight"), logits)
    else:  # background moved from first to last, dropped from the class-specific predictors
        torch.testing.assert_close(ours("box_predictorSTAGE.cls_score.weight"), torch.cat([cls[1:], cls[:1]]))
        torch.testing.assert_close(ours("mask_headSTAGE.predictor.weight"), logits[1:])
        if not layout.get("cascade"):
            torch.testing.assert_close(ours("box_predictorSTAGE.bbox_pred.weight"), reg[4:])
    if layout.get("dcn"):
        key = "conv2.conv_offset" if version == "v2" else "conv2_offset"
        torch.testing.assert_close(
            state["backbone.bottom_up.res4.7.conv2_offset.weight"], upstream[f"backbone.layer3.7.{key}.weight"]
        )
    torch.testing.assert_close(state["backbone.fpn_lateral3.weight"], upstream["neck.lateral_convs.1.conv.weight"])
    torch.testing.assert_close(
        state["proposal_generator.rpn_head.anchor_deltas.weight"], upstream["rpn_head.rpn_reg.weight"]
    )


@pytest.mark.parametrize("depth", [50, 101])
def test_mmseg_checkpoints_fill_the_model(depth):
    upstream = mmseg_checkpoint(depth)["state_dict"]
    model = load_exactly(
        build(CITYSCAPES / f"mmseg_gcnet_R_{depth}_D8_512x1024_40k.py"), CONVERTERS["mmseg"]({"state_dict": upstream})
    )
    state = model.state_dict()
    torch.testing.assert_close(state["backbone.stem.conv3.norm.running_var"], upstream["backbone.stem.7.running_var"])
    torch.testing.assert_close(state["sem_seg_head.conv_cat.weight"], upstream["decode_head.conv_cat.conv.weight"])
    torch.testing.assert_close(state["auxiliary_head.predictor.bias"], upstream["auxiliary_head.conv_seg.bias"])


def test_converted_backbone_equals_torchvision():
    """mmdetection's backbone layout is torchvision's: after conversion our ResNet and ResNeXt
    compute torchvision's features."""
    for config, groups, width in [("mask_rcnn_R_50_FPN_1x.py", 1, 64), ("mask_rcnn_X_101_32x4d_FPN_1x.py", 32, 4)]:
        depth = 50 if "R_50" in config else 101
        reference = torchvision_resnet(depth, groups, width, seed=3)
        upstream = mmdet_checkpoint("v2", depth, groups, width, resnet=reference)
        model = load_exactly(build(COCO / config), CONVERTERS["mmdet"](upstream))
        x = torch.randn(1, 3, 96, 128)
        with torch.no_grad():
            ours = model.backbone.bottom_up(x)["res5"]
            theirs = create_feature_extractor(reference, ["layer4"])(x)["layer4"]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_converted_gc_blocks_equal_mmcv():
    upstream = mmdet_checkpoint("v2", 50, gc_ratio=1 / 16, seed=5)
    model = load_exactly(build(COCO / "mask_rcnn_R_50_FPN_gc_r16_1x.py"), CONVERTERS["mmdet"](upstream))
    ours = model.backbone.bottom_up.res4[3].context_block
    theirs = mmcv_context_block(1024, 1 / 16, seed=5 + 100 * 3 + 3)  # what built layer3.3
    x = torch.randn(2, 1024, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_mmseg_backbone_equals_torchvision_dilated_resnet():
    """mmsegmentation's ResNetV1c-D8 stages with contract dilation are torchvision's ResNet
    with replace_stride_with_dilation (whose first dilated block halves the dilation)."""
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    reference.load_state_dict(torchvision_resnet(50, seed=7).state_dict())
    model = load_exactly(
        build(CITYSCAPES / "mmseg_gcnet_R_50_D8_512x1024_40k.py"),
        CONVERTERS["mmseg"](mmseg_checkpoint(50, resnet=reference)),
    )
    backbone = model.backbone
    with torch.no_grad():
        x = backbone.stem(torch.randn(1, 3, 64, 80))
        ours = backbone.res5(backbone.res4(backbone.res3(backbone.res2(x))))
        theirs = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "converter,extra",
    [
        ("mmdet", "roi_head.semantic_head.conv.weight"),
        ("mmseg", "decode_head.ocr.weight"),
        ("mmdet_v1", "backbone.layer2.0.gen_attention_block.weight"),
    ],
)
def test_unknown_upstream_keys_stop_the_conversion(converter, extra):
    checkpoint = (
        mmdet_checkpoint("v2" if converter == "mmdet" else "v1", 50) if converter != "mmseg" else mmseg_checkpoint(50)
    )
    checkpoint["state_dict"][extra] = torch.zeros(2, 3)
    with pytest.raises(
        UnconvertedKeysError, match=rf"{converter}: 1 upstream keys could not be converted: {extra} \[2, 3\]"
    ):
        CONVERTERS[converter](checkpoint)
