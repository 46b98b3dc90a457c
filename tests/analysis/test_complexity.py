"""Parameter and FLOP counts of gcnet.analysis.complexity and tools/analyze_model.py: exact sums,
GC/NL costs in closed form, and the fixed R-CNN workload."""

import re

import pytest

from detectron2.config import LazyConfig, instantiate

from gcnet.analysis import comparison_table, measure_complexity, paper_input_size
from gcnet.modeling import build_gcnet_resnet

from ..helpers import CONFIGS, TINY_CONFIG, num_parameters, run_tool

COCO = CONFIGS / "COCO-InstanceSegmentation"


def gc_block_flops(channels: int, positions: int, ratio: float) -> int:
    """fvcore's count for one GC block (Eq. 5): W_k (C per position) and the weighted sum
    (C per position), the two 1x1 convs of the transform, and the LayerNorm (5 per element)."""
    planes = int(channels * ratio)
    return 2 * channels * positions + 2 * channels * planes + 5 * planes


def test_gc_resnet50_costs_what_its_blocks_cost():
    """ResNet-50 at 224x224 with GC r16 in c3-c5: +2.52M parameters (25.56M -> 28.08M in the
    paper's Section 5.2) and the FLOPs of 13 GC blocks."""
    base = build_gcnet_resnet(50, norm="FrozenBN", out_features=["res5"]).eval()
    gc = build_gcnet_resnet(50, norm="FrozenBN", out_features=["res5"], context="gc", gc=dict(ratio=1 / 16)).eval()
    base_cost, gc_cost = measure_complexity(base, 224, 224), measure_complexity(gc, 224, 224)
    assert gc_cost.params == num_parameters(gc) and base_cost.params == num_parameters(base)
    assert round((gc_cost.params - base_cost.params) / 1e6, 2) == 2.52
    expected = (
        4 * gc_block_flops(512, 28 * 28, 1 / 16)
        + 6 * gc_block_flops(1024, 14 * 14, 1 / 16)
        + 3 * gc_block_flops(2048, 7 * 7, 1 / 16)
    )
    assert gc_cost.flops - base_cost.flops == expected
    # fvcore's count for the ResNet-50 trunk: convolutions, and BatchNorm at one per element.
    assert base_cost.flop_analysis.by_operator() == {"conv": 4087136256, "batch_norm": 22227968}


def test_rcnn_heads_run_on_a_fixed_number_of_rois():
    model = instantiate(LazyConfig.load(str(TINY_CONFIG)).model).eval()
    costs = {
        n: measure_complexity(model, 128, 160, num_box_rois=n, num_mask_rois=n // 2).flop_analysis.by_module()
        for n in (8, 16)
    }
    box_head = 64 * 7 * 7 * 128 + 128 * 128  # two fc layers per RoI
    box_predictor = 128 * 2 + 128 * 4  # 1 class + background, 1 class x 4 deltas
    mask_head = (
        64 * 64 * 9 * 14 * 14 + 64 * 64 * 4 * 14 * 14 + 64 * 1 * 28 * 28
    )  # conv_dims [64, 64]: conv, deconv, predictor
    for n, by_module in costs.items():
        assert by_module["roi_heads.box_head"] == n * box_head
        assert by_module["roi_heads.box_predictor"] == n * box_predictor
        assert by_module["roi_heads.mask_head"] == n // 2 * mask_head
    # The rest does not depend on the RoIs.
    assert costs[8]["backbone"] == costs[16]["backbone"] > 0
    assert costs[8]["proposal_generator"] == costs[16]["proposal_generator"] > 0


def test_segmentor_counts_the_main_head_not_the_auxiliary_one():
    cfg = LazyConfig.load(str(CONFIGS / "Cityscapes-SemanticSegmentation" / "gc_head_R_101_D8_769x769_60k.py"))
    cfg.model.backbone.depth = 50
    model = instantiate(cfg.model).eval()
    cost = measure_complexity(model, 65, 65)
    by_module = cost.flop_analysis.by_module()
    assert by_module["sem_seg_head"] > 0 and by_module.get("auxiliary_head", 0) == 0
    # The GC block of the head sees the 9x9 (stride 8) map of the 512-channel head features.
    assert by_module["sem_seg_head.context"] == gc_block_flops(512, 9 * 9, 1 / 4)
    assert cost.params == num_parameters(model)


def test_analyze_model_rows():
    """The script as a user runs it: a row per config, the paper's numbers, fvcore's table."""
    base, gc = COCO / "mask_rcnn_R_50_FPN_syncbn_1x.py", COCO / "mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py"
    result = run_tool(
        "tools/analyze_model.py",
        "--config-file",
        base,
        "--compare",
        gc,
        "--input-size",
        "256",
        "256",
        "--table",
        "--max-depth",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = {
        m[0]: m[1:] for m in re.findall(r"^\| (mask_rcnn\S+) \| ([\d.]+) \| (\S+) \| ([\d.]+) \| (\S+) \|", out, re.M)
    }
    params = {name: num_parameters(instantiate(LazyConfig.load(str(COCO / f"{name}.py")).model)) for name in rows}
    assert rows["mask_rcnn_R_50_FPN_syncbn_1x"][:2] == (f"{params['mask_rcnn_R_50_FPN_syncbn_1x'] / 1e6:.2f}", "-")
    assert rows["mask_rcnn_R_50_FPN_syncbn_gc_r16_1x"][0] == "46.92"  # Table 5
    assert float(rows["mask_rcnn_R_50_FPN_syncbn_gc_r16_1x"][1]) == pytest.approx(2.52, abs=0.005)
    # c3-c5 see 32x32, 16x16 and 8x8 maps of the 256x256 input.
    gc_flops = (
        4 * gc_block_flops(512, 32 * 32, 1 / 16)
        + 6 * gc_block_flops(1024, 16 * 16, 1 / 16)
        + 3 * gc_block_flops(2048, 8 * 8, 1 / 16)
    )
    assert rows["mask_rcnn_R_50_FPN_syncbn_gc_r16_1x"][3] == f"{gc_flops / 1e9:+.2f}"
    assert "| module" in out and "backbone" in out


def test_comparison_table_and_paper_input_sizes():
    first = measure_complexity(build_gcnet_resnet(18, norm="FrozenBN", out_features=["res5"]).eval(), 64, 64)
    gc = build_gcnet_resnet(18, norm="FrozenBN", out_features=["res5"], gc_stages=["res5"]).eval()
    second = measure_complexity(gc, 64, 64)
    header, rule, row1, row2 = comparison_table(["r18", "r18_gc"], [first, second])
    assert header.startswith("| config | #params (M) |") and rule.startswith("|---|")
    assert (
        row1 == f"| r18 | {first.params / 1e6:.2f} | - | {first.flops / 1e9:.2f} | - | {first.activations / 1e6:.1f} |"
    )
    assert row2.startswith(f"| r18_gc | {second.params / 1e6:.2f} | {(second.params - first.params) / 1e6:+.2f} |")
    assert paper_input_size(gc) == (224, 224)
    assert paper_input_size(instantiate(LazyConfig.load(str(TINY_CONFIG)).model)) == (800, 1280)


def test_analyze_model_bad_input(tmp_path):
    result = run_tool("tools/analyze_model.py", "--config-file", tmp_path / "missing.py")
    assert result.returncode == 2
    assert result.stderr == f"analyze_model: {tmp_path / 'missing.py'}: no such config file\n"


def test_deformable_convs_count_as_convs_plus_their_offsets():
    plain = build_gcnet_resnet(50, norm="FrozenBN", out_features=["res5"]).eval()
    dcn = build_gcnet_resnet(50, norm="FrozenBN", out_features=["res5"], deform_stages=["res5"]).eval()
    # res5 at 224x224: three 3x3 convs on a 7x7 map (512 -> 512), each with an offset conv to
    # 2 x 3 x 3 = 18 channels.
    offsets = 3 * 18 * 512 * 9 * 7 * 7
    assert measure_complexity(dcn, 224, 224).flops - measure_complexity(plain, 224, 224).flops == offsets
