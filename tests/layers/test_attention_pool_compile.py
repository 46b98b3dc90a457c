"""The Triton kernel compiled for GPUs without one (gcnet.analysis.kernel_report, behind
tools/triton_kernel_report.py: Triton's own specialisation, triton.compile for sm_80 and sm_90,
ptxas -v): no register spills where the first version spilled (C >= 2048 with H*W not a
multiple of 16, in NCHW), and image sizes that vary in training compile no new variants."""

import json

from gcnet.analysis import kernel_report

from ..helpers import run_tool


def test_no_spills_for_sm80_and_sm90():
    rows = kernel_report.report_rows([80, 90], ["float32", "bfloat16"], ["contiguous", "channels_last"], ["c5"])
    assert len(rows) == 4 and {r["tile"] for r in rows} == {"2048x4"} and {r["num_warps"] for r in rows} == {16}
    for row in rows:
        for target in ("sm_80", "sm_90"):
            usage = row[target]
            assert usage["spill_stores"] == usage["spill_loads"] == usage["stack"] == 0, (row, target)
            assert 32 <= usage["registers"] <= 128, (row, target)  # 16 warps: 128 at most without spills
    assert kernel_report.spilling_rows(rows, [80, 90]) == []
    spilling = dict(rows[0], sm_90=dict(rows[0]["sm_90"], spill_loads=8))
    assert kernel_report.spilling_rows([spilling] + rows[1:], [80, 90]) == [spilling]


def test_training_sizes_compile_no_new_variants():
    """168 padded image sizes per stage: one variant in channels_last; in NCHW two where H*W
    may or may not be a multiple of 16 (c4, c5), which decides whether rows load as vectors."""
    rows = kernel_report.multiscale_variants(["float32", "bfloat16"], ["contiguous", "channels_last"])
    assert {r["sizes"] for r in rows} == {168}
    variants = {(r["dtype"], r["layout"], r["stage"]): r["variants"] for r in rows}
    expected_nchw = {"c3": 1, "c4": 2, "c5": 2}
    for dtype in ("float32", "bfloat16"):
        for stage, count in expected_nchw.items():
            assert variants[dtype, "contiguous", stage] == count
            assert variants[dtype, "channels_last", stage] == 1


def test_report_command(tmp_path):
    out = tmp_path / "report.json"
    args = ["--archs", "90", "--dtypes", "bfloat16", "--layouts", "channels_last", "--shapes", "c5", "--json", str(out)]
    result = run_tool("tools/triton_kernel_report.py", *args, timeout=300)
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()
    assert table[0] == "| shape | size | dtype | layout | tile | warps | sm_90 registers | sm_90 spills (bytes) |"
    assert table[2].startswith("| c5 | 2x2048x25x38 | bfloat16 | channels_last | 2048x4 | 16 | ") and table[2].endswith(
        " | 0 |"
    )
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["sm_90"]["spill_stores"] == 0 and len(saved["multiscale"]) == 3


def test_the_script_offers_the_library_s_shapes():
    result = run_tool("tools/triton_kernel_report.py", "--shapes", "c6", timeout=60)
    assert result.returncode == 2
    assert f"(choose from {', '.join(map(repr, kernel_report.SHAPES))})" in result.stderr
