"""The Cityscapes model of Section 5.4: head layout, Table 12 sizes, inference modes, TTA."""

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from gcnet.layers import NON_LOCAL_MODES, ContextBlock, NonLocalBlock, SimplifiedNonLocalBlock
from gcnet.modeling import ContextHead, ContextSegmentor, add_gcnet_config, build_gcnet_resnet

from ..helpers import CONFIGS, num_parameters, randomize_

CITYSCAPES = CONFIGS / "Cityscapes-SemanticSegmentation"

# Table 12: #params of the ResNet-101 models.
TABLE12_PARAMS = {
    "fcn_R_101_D8_769x769_60k.py": 70.96e6,
    "nl_head_R_101_D8_769x769_60k.py": 71.22e6,
    "snl_head_R_101_D8_769x769_60k.py": 71.22e6,
    "gc_head_R_101_D8_769x769_60k.py": 71.09e6,
    "fcn_R_101_D8_gc_r4_769x769_60k.py": 89.92e6,
    "gc_head_R_101_D8_gc_r4_769x769_60k.py": 90.05e6,
    "gc_head_avg_scale_R_101_D8_769x769_60k.py": 71.09e6,
    "gc_head_avg_add_R_101_D8_769x769_60k.py": 71.09e6,
    "gc_head_att_scale_R_101_D8_769x769_60k.py": 71.09e6,
}


@pytest.mark.parametrize("name", sorted(TABLE12_PARAMS))
def test_parameter_counts_match_table12(name):
    model = instantiate(LazyConfig.load(str(CITYSCAPES / name)).model)
    assert abs(num_parameters(model) / TABLE12_PARAMS[name] - 1) < 0.002, num_parameters(model)


@pytest.mark.parametrize("name", sorted(p.name for p in CITYSCAPES.glob("*.py")))
def test_every_config_builds_and_predicts(name):
    cfg = LazyConfig.load(str(CITYSCAPES / name))
    model = instantiate(cfg.model).eval()
    backbone = model.backbone
    assert backbone.output_shape()["res5"].stride == 8 and backbone.output_shape()["res4"].stride == 8
    stem = [backbone.stem.conv1.out_channels, backbone.stem.conv2.out_channels, backbone.stem.conv3.out_channels]
    assert stem == ([32, 32, 64] if name.startswith("mmseg") else [64, 64, 128])
    with torch.no_grad():
        (output,) = model([{"image": torch.randint(0, 256, (3, 40, 56)).float(), "height": 80, "width": 112}])
    probabilities = output["sem_seg"]
    assert probabilities.shape == (19, 80, 112)
    torch.testing.assert_close(probabilities.sum(0), torch.ones(80, 112))


@pytest.mark.parametrize(
    "context,module_type",
    [("gc", ContextBlock), ("nl", NonLocalBlock), ("snl", SimplifiedNonLocalBlock), ("none", type(None))],
)
def test_head_layout(context, module_type):
    """3x3 conv c5 -> 512, context, 3x3 conv 512 -> 512, concat with c5, 3x3 conv to 512,
    dropout 0.1, 1x1 classifier."""
    head = ContextHead(in_feature="res5", in_channels=64, num_classes=5, channels=32, context=context, norm="BN").eval()
    assert isinstance(head.context, module_type)
    assert [c.weight.shape for c in head.convs] == [(32, 64, 3, 3), (32, 32, 3, 3)]
    assert head.conv_cat.weight.shape == (32, 64 + 32, 3, 3)
    assert head.predictor.weight.shape == (5, 32, 1, 1) and head.dropout.p == 0.1
    if context == "gc":
        assert head.context.planes == 8  # ratio 1/4
    randomize_(head, scale=0.1)
    x = torch.randn(2, 64, 6, 7)
    out = head.convs[0](x)
    out = head.context(out) if head.context is not None else out
    expected = head.predictor(head.conv_cat(torch.cat([x, head.convs[1](out)], dim=1)))
    logits, losses = head({"res5": x})
    torch.testing.assert_close(logits, expected)
    assert losses == {}


def test_nl_head_instantiations():
    """Table 4: the four pairwise functions of the NL head."""
    for mode in NON_LOCAL_MODES:
        head = ContextHead(
            in_feature="res5",
            in_channels=16,
            num_classes=3,
            channels=8,
            context="nl",
            nl=dict(mode=mode, reduction=4),
            norm="BN",
        )
        assert head.context.mode == mode and head.context.inter_channels == 2


def test_head_loss_ignores_255_and_scales():
    head = ContextHead(
        in_feature="res4",
        in_channels=8,
        num_classes=3,
        channels=4,
        num_convs=1,
        concat_input=False,
        context="none",
        norm="BN",
        loss_weight=0.4,
        loss_name="aux",
    )
    assert head.conv_cat is None
    logits = torch.randn(1, 3, 4, 4)
    targets = torch.randint(0, 3, (1, 8, 8))
    targets[0, :4] = 255
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    expected = 0.4 * F.cross_entropy(up[..., 4:, :], targets[:, 4:])
    torch.testing.assert_close(head.losses(logits, targets)["aux"], expected)


@pytest.fixture(scope="module")
def segmentor():
    torch.manual_seed(0)
    backbone = build_gcnet_resnet(18, norm="BN", out_features=["res4", "res5"])
    head = ContextHead(in_feature="res5", in_channels=512, num_classes=4, channels=16, norm="BN")
    return ContextSegmentor(backbone=backbone, sem_seg_head=head, pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1]).eval()


def test_slide_averages_windows(segmentor):
    x = torch.randn(1, 3, 40, 48)
    segmentor.crop_size, segmentor.stride = (32, 32), (16, 16)
    with torch.no_grad():
        slide = segmentor._slide(x)
        # Windows: rows start at 0 and 8 (the last one ends at the border), columns at 0, 16.
        total, count = torch.zeros(1, 4, 40, 48), torch.zeros(1, 1, 40, 48)
        for y in (0, 8):
            for x0 in (0, 16):
                total[..., y : y + 32, x0 : x0 + 32] += segmentor.logits(x[..., y : y + 32, x0 : x0 + 32])
                count[..., y : y + 32, x0 : x0 + 32] += 1
    torch.testing.assert_close(slide, total / count)
    segmentor.crop_size = (64, 64)  # one window covering the image: the whole-image logits
    with torch.no_grad():
        torch.testing.assert_close(segmentor._slide(x), segmentor.logits(x))


def test_flip_and_scale_test_time_augmentation(segmentor):
    image = torch.randn(3, 32, 40)
    segmentor.mode, segmentor.scales, segmentor.flip = "whole", (1.0, 0.5), True
    try:
        with torch.no_grad():
            predicted = segmentor.predict(image, 32, 40)
            expected = 0
            for scale in (1.0, 0.5):
                x = image[None] if scale == 1 else F.interpolate(image[None], scale_factor=scale, mode="bilinear")
                for flip in (False, True):
                    logits = segmentor.logits(x.flip(-1) if flip else x)
                    logits = logits.flip(-1) if flip else logits
                    expected = expected + F.interpolate(logits, size=(32, 40), mode="bilinear").softmax(1)
    finally:
        segmentor.scales, segmentor.flip = (1.0,), False
    torch.testing.assert_close(predicted, expected[0] / 4)


def test_training_returns_main_and_auxiliary_losses():
    torch.manual_seed(0)
    backbone = build_gcnet_resnet(18, norm="BN", out_features=["res4", "res5"], context="gc", context_stages=["res5"])
    head = ContextHead(in_feature="res5", in_channels=512, num_classes=4, channels=16, norm="BN")
    aux = ContextHead(
        in_feature="res4",
        in_channels=256,
        num_classes=4,
        channels=8,
        num_convs=1,
        concat_input=False,
        context="none",
        norm="BN",
        loss_weight=0.4,
        loss_name="loss_sem_seg_aux",
    )
    model = ContextSegmentor(
        backbone=backbone, sem_seg_head=head, auxiliary_head=aux, pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1]
    )
    inputs = [
        {"image": torch.rand(3, 48, 64) * 255, "sem_seg": torch.randint(0, 4, (48, 64))},
        {"image": torch.rand(3, 40, 56) * 255, "sem_seg": torch.full((40, 56), 255)},
    ]
    losses = model(inputs)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}
    sum(losses.values()).backward()
    assert head.predictor.weight.grad.abs().sum() > 0 and aux.predictor.weight.grad.abs().sum() > 0


def test_yacs_builds_the_segmentor():
    cfg = get_cfg()
    add_gcnet_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "ContextSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_gcnet_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    cfg.MODEL.GCNET.CONTEXT_STAGES = []
    cfg.MODEL.GCNET.STEM = "deep"
    cfg.MODEL.GCNET.DILATIONS = [1, 1, 2, 4]
    cfg.MODEL.GCNET.CONTRACT_DILATION = True
    cfg.MODEL.SEM_SEG_HEAD.NAME = "ContextHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res5"]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 19
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 512
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.MODEL.GCNET_SEG.INFERENCE_MODE = "slide"
    cfg.MODEL.GCNET_SEG.CROP_SIZE = [32, 32]
    cfg.MODEL.GCNET_SEG.STRIDE = [24, 24]
    model = build_model(cfg).eval()
    assert isinstance(model, ContextSegmentor) and isinstance(model.sem_seg_head.context, ContextBlock)
    assert model.auxiliary_head.convs[0].out_channels == 256 and model.auxiliary_head.loss_weight == 0.4
    assert model.backbone.res4[0].conv2.dilation == (1, 1) and model.backbone.res4[1].conv2.dilation == (2, 2)
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 48, 40)}])
    assert output["sem_seg"].shape == (19, 48, 40)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(inference=dict(mode="sliding")), "inference.mode must be one of ('whole', 'slide')"),
        (dict(inference=dict(scales=[0])), "inference.scales must be positive numbers"),
        (dict(inference=dict(crop=[1, 1])), "inference has unknown keys ['crop']"),
    ],
)
def test_bad_inference_options(segmentor, kwargs, message):
    with pytest.raises(ValueError) as info:
        ContextSegmentor(
            backbone=segmentor.backbone,
            sem_seg_head=segmentor.sem_seg_head,
            pixel_mean=[0, 0, 0],
            pixel_std=[1, 1, 1],
            **kwargs,
        )
    assert message in str(info.value)


def test_bad_head_options():
    with pytest.raises(ValueError, match=r"context must be one of \('none', 'gc', 'nl', 'snl'\), got 'aspp'"):
        ContextHead(in_feature="res5", in_channels=8, num_classes=2, channels=4, context="aspp", norm="BN")
    with pytest.raises(ValueError, match="stem_channels must be 3 ints for the deep stem"):
        build_gcnet_resnet(50, stem="deep", stem_channels=[32, 64])
    with pytest.raises(ValueError, match=r"stem must be one of \('basic', 'deep'\)"):
        build_gcnet_resnet(50, stem="wide")
