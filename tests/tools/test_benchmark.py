"""tools/benchmark.py runs its suites and compares like with like (no timing is asserted:
speed is what the script reports, not what tests check)."""
import argparse

import pytest
import torch

from ..helpers import TINY_CONFIG, load_tool



@pytest.fixture(scope="module")
def bench():
    return load_tool("benchmark")


def test_peers_compute_the_same_block(bench):
    blocks = bench.peer_blocks(64)
    assert set(blocks) == {"gcnet", "mmcv", "timm", "se", "nl", "snl"}
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        expected = blocks["gcnet"](x)
        assert (expected - x).abs().max() > 1e-3  # the GC term is not zero
        for name in ("mmcv", "timm"):
            torch.testing.assert_close(blocks[name](x), expected, rtol=1e-5, atol=1e-5, msg=name)


def test_block_rows_and_table(bench):
    args = argparse.Namespace(min_run_time=0.01, max_attention_gb=1e-5)  # the NL attention here: 7e-5 GB
    rows = bench.shape_rows((2, 64, 8, 12), "float32", torch.float32, "channels_last", torch.device("cpu"), None, args)
    timed = [r for r in rows if "skipped" not in r]
    assert [r["block"] for r in timed] == ["gcnet", "mmcv", "timm", "se", "snl"]
    assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 for r in timed)
    assert rows[-1]["block"] == "nl" and rows[-1]["skipped"].startswith("N_p x N_p attention of")
    table = bench.block_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[2].startswith("| 2x64x8x12 | float32 | channels_last | gcnet | ") and "| 1.00 |" in table[2]


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_model_measurement(bench, mode):
    row = bench.measure_model(TINY_CONFIG, TINY_CONFIG, mode, (96, 128), iters=1, device="cpu", channels_last=mode == "train")
    assert row["median_s"] > 0 and row["peak_gb"] > 0 and row["memory"] == "peak RSS of the process"
    assert (row.get("saved_gb", 0) > 0) == (mode == "train")
    base, gc = dict(row, pair="tiny"), dict(row, pair="tiny", median_s=row["median_s"] * 1.02)
    if mode == "train":
        gc["saved_gb"] = base["saved_gb"] + 0.25
    table = bench.model_table([base, gc]).splitlines()
    assert "| 1.020 |" in table[3] and table[-1] == "Memory: peak RSS of the process."
    assert table[3].endswith(f"({0.25:+.3f}) |" if mode == "train" else "|  |")


def test_saved_tensor_bytes_counts_each_storage_once(bench):
    x = torch.randn(256, 256, requires_grad=True)
    with bench.saved_tensor_bytes() as saved:
        y = (x * x).sum()  # saves x twice: one storage
    assert sum(saved.values()) == x.numel() * 4
    y.backward()
