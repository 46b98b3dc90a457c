"""The COCO LazyConfigs: every file builds a model that runs, with the paper's sizes (Table 5)."""

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.roi_heads import StandardROIHeads

from gcnet.layers import ContextBlock
from gcnet.modeling import DeformConv2d, MultiMaskCascadeROIHeads, SyncBatchNorm

from ..helpers import CONFIGS, num_parameters

COCO = CONFIGS / "COCO-InstanceSegmentation"
# The GC-ResNet configs (timm backbones: tests/modeling/test_timm_backbone.py).
COCO_CONFIGS = sorted(str(p.relative_to(COCO)) for p in COCO.rglob("*.py") if "_timm_" not in p.name)

# Table 5: parameters of Mask R-CNN R50-FPN (SyncBN backbone) per ablation row.
TABLE5_PARAMS = {
    "mask_rcnn_R_50_FPN_syncbn_1x.py": 44.4e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_1nl_1x.py": 46.5e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_1snl_1x.py": 45.4e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_1gc_1x.py": 44.5e6,
    "mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py": 46.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_afterAdd_1x.py": 46.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_c3_1x.py": 44.5e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_c4_1x.py": 45.2e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_c5_1x.py": 45.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_wo_ratio_1x.py": 64.4e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_noln_norelu_1x.py": 46.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_noln_1x.py": 46.9e6,
    "mask_rcnn_R_50_FPN_syncbn_gc_r4_1x.py": 54.4e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r8_1x.py": 49.4e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r32_1x.py": 45.7e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_avg_scale_1x.py": 46.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_avg_add_1x.py": 46.9e6,
    "ablations/mask_rcnn_R_50_FPN_syncbn_gc_r16_att_scale_1x.py": 46.9e6,
}


def load(name):
    return LazyConfig.load(str(COCO / name))


def test_config_family_is_complete():
    names = set(COCO_CONFIGS)
    for meta, backbones in (("mask_rcnn", ("R_50", "R_101", "X_101_32x4d")),):
        for backbone in backbones:
            for norm in ("", "syncbn_"):
                for gc in ("", "gc_r16_", "gc_r4_"):
                    schedules = ("1x", "2x") if backbone == "R_50" else ("1x",)
                    for schedule in schedules:
                        assert f"{meta}_{backbone}_FPN_{norm}{gc}{schedule}.py" in names
    for gc in ("", "_gc_r16", "_gc_r4"):
        assert f"mask_rcnn_R_50_FPN_syncbn_4conv1fc{gc}_1x.py" in names
        for dcn in ("", "_dcn"):
            assert f"cascade_mask_rcnn_X_101_32x4d_FPN_syncbn{dcn}{gc}_1x.py" in names
    assert set(TABLE5_PARAMS) <= names


@pytest.mark.parametrize("name", COCO_CONFIGS)
def test_config_builds_and_runs(name):
    cfg = load(name)
    model = instantiate(cfg.model).eval()
    assert cfg.model.input_format == "RGB" and cfg.dataloader.train.mapper.image_format == "RGB"
    assert cfg.model.backbone.bottom_up.stride_in_1x1 is False  # pytorch-style ImageNet weights
    assert cfg.train.init_checkpoint.startswith(("detectron2://ImageNetPretrained/", "gcnet://ImageNetPretrained/"))
    with torch.no_grad():
        (output,) = model([{"image": torch.randint(0, 256, (3, 120, 160)).float(), "height": 240, "width": 320}])
    assert output["instances"].image_size == (240, 320)


def _describe(model):
    bottom_up = model.backbone.bottom_up
    return dict(
        gc=[m for m in bottom_up.modules() if isinstance(m, ContextBlock)],
        dcn=[m for m in bottom_up.modules() if isinstance(m, DeformConv2d)],
        syncbn=[m for m in bottom_up.modules() if isinstance(m, SyncBatchNorm)],
    )


@pytest.mark.parametrize(
    "name,depth,groups,gc_ratio,syncbn,dcn,max_iter",
    [
        ("mask_rcnn_R_50_FPN_1x.py", 50, 1, None, False, False, 90000),
        ("mask_rcnn_R_50_FPN_syncbn_gc_r4_2x.py", 50, 1, 4, True, False, 180000),
        ("mask_rcnn_R_101_FPN_gc_r16_1x.py", 101, 1, 16, False, False, 90000),
        ("mask_rcnn_X_101_32x4d_FPN_syncbn_gc_r4_1x.py", 101, 32, 4, True, False, 90000),
        ("cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_dcn_gc_r16_1x.py", 101, 32, 16, True, True, 90000),
    ],
)
def test_config_builds_the_named_network(name, depth, groups, gc_ratio, syncbn, dcn, max_iter):
    cfg = load(name)
    model = instantiate(cfg.model)
    parts = _describe(model)
    bottom_up = model.backbone.bottom_up
    assert len(bottom_up.res4) == {50: 6, 101: 23}[depth]
    assert bottom_up.res2[0].conv2.groups == groups
    if gc_ratio:  # every block of c3-c5 (4 + len(res4) + 3 blocks), none in c2
        assert len(parts["gc"]) == 4 + len(bottom_up.res4) + 3
        assert all(block.context_block is None for block in bottom_up.res2)
        assert bottom_up.res5[0].context_block.planes == 2048 // gc_ratio
    else:
        assert not parts["gc"]
    assert bool(parts["syncbn"]) == syncbn
    assert len(parts["dcn"]) == (4 + len(bottom_up.res4) + 3 if dcn else 0)
    assert cfg.train.max_iter == max_iter
    if name.startswith("cascade"):  # a mask head per stage, as the paper's Cascade Mask R-CNN
        assert type(model.roi_heads) is MultiMaskCascadeROIHeads and len(model.roi_heads.mask_head) == 3
    else:
        assert type(model.roi_heads) is StandardROIHeads


def test_4conv1fc_heads_use_syncbn():
    model = instantiate(load("mask_rcnn_R_50_FPN_syncbn_4conv1fc_gc_r16_1x.py").model)
    box_head = model.roi_heads.box_head
    assert [type(c.norm).__name__ for c in box_head.conv_norm_relus] == ["NaiveSyncBatchNorm"] * 4
    assert [m.out_features for m in box_head.fcs] == [1024]
    assert isinstance(model.backbone.fpn_lateral2.norm, SyncBatchNorm)


def test_training_recipe():
    """Section 5.1: 16 images, SGD lr 0.02 momentum 0.9 wd 1e-4, steps at 60k/80k of 90k,
    short side 800 (max 1333), c1-c2 frozen."""
    cfg = load("mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py")
    assert cfg.dataloader.train.total_batch_size == 16
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.02, 0.9, 1e-4)
    assert cfg.model.backbone.bottom_up.freeze_at == 2
    resize = cfg.dataloader.train.mapper.augmentations[0]
    assert (resize.short_edge_length, resize.max_size) == (800, 1333)
    multiplier = instantiate(cfg.lr_multiplier)
    max_iter = cfg.train.max_iter
    values = {it: multiplier(it / max_iter) for it in (0, 499, 1000, 59999, 60000, 79999, 80000, 89999)}
    assert values[0] == pytest.approx(1 / 3) and values[499] < 1
    assert values[1000] == values[59999] == 1.0
    assert values[60000] == values[79999] == pytest.approx(0.1)
    assert values[80000] == values[89999] == pytest.approx(0.01)


@pytest.mark.parametrize("name", sorted(TABLE5_PARAMS))
def test_parameter_counts_match_table5(name):
    params = num_parameters(instantiate(load(name).model))
    assert abs(params / TABLE5_PARAMS[name] - 1) < 0.003, params


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.backbone.bottom_up.context_stages=[res3,res6]", "context_stages has unknown stages ['res6']"),
        # The old name of context_stages, in a config file (detectron2's overrides add keys).
        ("model.backbone.bottom_up.gc_stages=[res3,res6]", "context_stages has unknown stages ['res6']"),
        ("model.backbone.bottom_up.context=gcc", "res3 (512 channels): context must be one of ('none', 'gc'"),
        ("model.backbone.bottom_up.gc.ratio=0.0001", "ContextBlock: in_channels * ratio must be >= 1"),
        ("model.backbone.bottom_up.deform_stages=[res6]", "deform_stages has unknown stages ['res6']"),
        ("model.backbone.bottom_up.depth=77", "depth must be one of [18, 34, 50, 101, 152], got 77"),
    ],
)
def test_bad_options_fail_at_instantiation(override, message):
    cfg = LazyConfig.apply_overrides(load("mask_rcnn_R_50_FPN_gc_r16_1x.py"), [override])
    with pytest.raises(ValueError) as info:
        instantiate(cfg.model)
    assert message in str(info.value)
