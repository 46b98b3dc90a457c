"""The Triton kernel of the attention pooling (the CUDA forward) equals the definition:
outputs and gradients through conv_attention_pool, in both layouts, checked on CPU in
Triton's interpreter (triton_interpreter_checks.py, in a subprocess)."""
import os
import subprocess
import sys

from gcnet.layers import attention_pool_triton

from ..helpers import REPO_ROOT

CHECKS = os.path.join(os.path.dirname(__file__), "triton_interpreter_checks.py")


def test_triton_is_installed():
    """torch's CUDA wheels bring Triton; without it the kernel checks below would prove nothing."""
    assert attention_pool_triton.triton is not None


def test_kernel_equals_definition_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", CHECKS],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_cpu_tensors_take_the_pytorch_path():
    import torch

    assert os.environ.get("TRITON_INTERPRET") != "1"
    assert not attention_pool_triton.supports(torch.zeros(1, 4, 2, 2))
