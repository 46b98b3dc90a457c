"""The Triton kernel of the attention pooling (the CUDA forward) equals the definition:
outputs and gradients through conv_attention_pool, in every dtype it takes, any strides and
under autocast, with its fall-back and its switch, checked on CPU in Triton's interpreter
(triton_interpreter_checks.py, in a subprocess)."""

import importlib.util
import os

import torch

from gcnet.layers.attention_pool import triton_supports

from ..helpers import run_tool

CHECKS = os.path.join(os.path.dirname(__file__), "triton_interpreter_checks.py")


def test_triton_is_installed():
    """torch's CUDA wheels bring Triton; without it the kernel checks below would prove nothing."""
    assert importlib.util.find_spec("triton") is not None


def test_kernel_equals_definition_in_the_interpreter():
    result = run_tool(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", CHECKS, env={"TRITON_INTERPRET": "1"}, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_cpu_tensors_take_the_pytorch_path():
    assert os.environ.get("TRITON_INTERPRET") != "1"
    assert not triton_supports(torch.zeros(1, 4, 2, 2))


def test_importing_the_blocks_leaves_triton_alone():
    """Triton is imported for the first tensor that may use it, not at start-up (CPU runs never do)."""
    result = run_tool(
        "-c",
        "import sys, torch, gcnet.layers as L; L.ContextBlock(8, 1 / 4)(torch.randn(1, 8, 3, 3)); print('triton' in "
        "sys.modules)",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_the_switch_leaves_triton_alone():
    """GCNET_DISABLE_TRITON=1: the PyTorch path, and Triton not even imported, where the kernel
    would otherwise run (here: the interpreter)."""
    code = (
        "import sys, torch, gcnet.layers as L; from gcnet.layers.attention_pool import triton_supports; "
        "x = torch.randn(1, 8, 3, 3); "
        "print(triton_supports(x), end=' '); L.ContextBlock(8, 1 / 4)(x); print('triton' in sys.modules)"
    )
    for disable, expected in [("1", "False False"), ("0", "True True")]:
        result = run_tool("-c", code, env={"TRITON_INTERPRET": "1", "GCNET_DISABLE_TRITON": disable})
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == expected, disable
