"""Every tool answers --help (and bad options) before it imports torch, so at once."""

import re

import pytest

from detectron2.engine import default_argument_parser

from gcnet.utils.argument_parser import default_argument_parser as gcnet_argument_parser

from ..helpers import run_tool

TOOLS = [
    "train_net",
    "demo",
    "web_demo",
    "prepare_datasets",
    "convert_checkpoint",
    "analyze_model",
    "export_model",
    "labelme_to_coco",
    "benchmark",
    "benchmark_predict",
    "triton_kernel_report",
    "predict",
    "submit",
]

HELP_WITHOUT_TORCH = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
print(sorted(m for m in ("torch", "detectron2", "cv2") if m in sys.modules))
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_help_is_answered_without_heavy_imports(tool):
    result = run_tool("-c", HELP_WITHOUT_TORCH, f"tools/{tool}.py", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and result.stdout.splitlines()[-1] == "[]", result.stdout[-500:]


def test_train_net_parses_as_detectron2s_parser():
    """gcnet's default_argument_parser builds detectron2's options itself (to answer --help
    without importing detectron2): the same arguments give the same values."""
    argv = [
        "--config-file",
        "c.py",
        "--resume",
        "--num-gpus",
        "2",
        "--num-machines",
        "3",
        "--machine-rank",
        "1",
        "a.b=1",
    ]
    ours = vars(gcnet_argument_parser().parse_args(argv))
    theirs = vars(default_argument_parser().parse_args(argv))
    assert {k: ours[k] for k in theirs} == theirs


def test_export_formats_are_the_exporters():
    """export_model.py --format offers exactly the formats gcnet.export writes (its --help is
    answered before gcnet.export is imported, so it names them itself)."""
    from gcnet.export import EXPORT_FORMATS

    result = run_tool("tools/export_model.py", "--help")
    assert result.returncode == 0, result.stderr
    choices = re.search(r"--format \{([^}]*)\}", result.stdout).group(1)
    assert tuple(choices.split(",")) == EXPORT_FORMATS
