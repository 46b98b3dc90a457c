"""The benchmarks of gcnet.analysis.benchmark (tools/benchmark.py) run their suites and compare
like with like (no timing is asserted: speed is what the script reports, not what tests check)."""

import re

import torch

from gcnet.analysis import benchmark

from ..helpers import TINY_CONFIG, run_tool


def test_peers_compute_the_same_block():
    blocks = benchmark.peer_blocks(64)
    assert set(blocks) == {"gcnet", "mmcv", "timm", "se", "nl", "snl"}
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        expected = blocks["gcnet"](x)
        assert (expected - x).abs().max() > 1e-3  # the GC term is not zero
        for name in ("mmcv", "timm"):
            torch.testing.assert_close(blocks[name](x), expected, rtol=1e-5, atol=1e-5, msg=name)


def test_block_rows_and_table():
    # The NL attention here: 7e-5 GB, over the limit.
    rows = benchmark.shape_rows((2, 64, 8, 12), "float32", "channels_last", torch.device("cpu"), None, 0.01, 1e-5)
    timed = [r for r in rows if "skipped" not in r]
    assert [r["block"] for r in timed] == ["gcnet", "mmcv", "timm", "se", "snl"]
    assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 for r in timed)
    assert rows[-1]["block"] == "nl" and rows[-1]["skipped"].startswith("N_p x N_p attention of")
    table = benchmark.block_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[2].startswith("| 2x64x8x12 | float32 | channels_last | gcnet | ") and "| 1.00 |" in table[2]


def test_model_measurement():
    for mode in ("inference", "train"):
        channels_last = mode == "train"
        row = benchmark.measure_model(TINY_CONFIG, TINY_CONFIG, mode, (96, 128), 1, "cpu", channels_last=channels_last)
        assert row["median_s"] > 0 and row["peak_gb"] > 0 and row["memory"] == "peak RSS of the process"
        assert (row.get("saved_gb", 0) > 0) == (mode == "train")
        base, gc = dict(row, pair="tiny"), dict(row, pair="tiny", median_s=row["median_s"] * 1.02)
        if mode == "train":
            gc["saved_gb"] = base["saved_gb"] + 0.25
        table = benchmark.model_table([base, gc]).splitlines()
        assert "| 1.020 |" in table[3] and table[-1] == "Memory: peak RSS of the process."
        assert table[3].endswith(f"({0.25:+.3f}) |" if mode == "train" else "|  |")


def test_each_model_is_measured_in_a_process_of_its_own():
    pairs, sizes = {"tiny": (TINY_CONFIG, TINY_CONFIG)}, {"tiny": (64, 96)}
    rows = benchmark.model_rows(pairs, sizes, ["inference"], iters=1, device="cpu", threads=1)
    assert [(r["pair"], r["mode"], r["size"]) for r in rows] == [("tiny", "inference", [64, 96])] * 2
    assert all(r["median_s"] > 0 for r in rows)
    assert rows[0]["peak_gb"] < 2 * rows[1]["peak_gb"]  # the second process's peak is its own


def test_saved_tensor_bytes_counts_each_storage_once():
    x = torch.randn(256, 256, requires_grad=True)
    with benchmark.saved_tensor_bytes() as saved:
        y = (x * x).sum()  # saves x twice: one storage
    assert sum(saved.values()) == x.numel() * 4
    y.backward()


def option_entries(help_text: str):
    """(invocation, help) of each option that ``--help`` lists."""
    section = help_text.split("options:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", section.strip("\n"))
    return [tuple(re.split(r"\s{2,}|\n\s+", entry.strip(), maxsplit=1)) + ("",) for entry in entries]


def run_help(*args) -> str:
    result = run_tool("tools/benchmark.py", *args, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_option_has_its_help_and_the_library_s_choices():
    """tools/benchmark.py answers --help without torch: every option (and command) has a line of
    help, no hidden one shows as ==SUPPRESS==, and the choices are the library's."""
    top = run_help()
    assert "SUPPRESS" not in top and "measure-model" not in top
    assert re.search(r"^    blocks\s{2,}\S", top, re.M) and re.search(r"^    models\s{2,}\S", top, re.M)
    for command in ("blocks", "models"):
        text = run_help(command)
        entries = option_entries(text)
        assert len(entries) >= 6 and all(entry[1] for entry in entries), entries
    blocks = run_help("blocks")
    for option, values in (("--dtypes", benchmark.DTYPES), ("--layouts", benchmark.LAYOUTS)):
        assert f"{option} {{{','.join(values)}}}" in blocks
