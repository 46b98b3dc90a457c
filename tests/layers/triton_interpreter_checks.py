"""Checks of the Triton attention-pooling kernel, run by test_attention_pool_triton.py in a
pytest subprocess with TRITON_INTERPRET=1 (Triton reads it when a kernel is defined), where
the kernel runs on CPU tensors. Not collected by the main run (no ``test_`` prefix)."""
import os

import pytest
import torch
import torch.nn.functional as F

from gcnet.layers import attention_pool, attention_pool_triton, conv_attention_pool
from gcnet.layers.attention_pool import TRITON_MAX_CHANNELS, triton_supports

from .test_attention_pool import SHAPES, reference_and_fast

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/layers/test_attention_pool_triton.py"


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the kernel's launches through conv_attention_pool."""
    calls = []
    kernel = attention_pool_triton.triton_attention_pool

    def counted(*args):
        calls.append(args[0].shape)
        return kernel(*args)

    monkeypatch.setattr(attention_pool_triton, "triton_attention_pool", counted)
    return calls


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", SHAPES + [(3, 37, 7, 5), (2, 100, 12, 13)], ids=str)
def test_kernel_path_equals_definition(shape, layout, kernel_calls):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).contiguous(memory_format=layout)
    weight, bias = torch.randn(1, shape[1], 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    (ref, *ref_grads), (fast, *fast_grads) = reference_and_fast(x, weight, bias)
    assert kernel_calls == [x.shape]
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    for name, a, b in zip(["x", "weight", "bias"], fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_kernel_splits_merge_into_the_softmax():
    """Several programs per image (a split of the positions each) merge into Eq. 5's weights."""
    x = torch.randn(2, 64, 20, 31)
    weight, bias = torch.randn(1, 64, 1, 1) * 0.3, torch.randn(1)
    block_p = 64  # 64 channels: (64, 64) tiles, 10 per image
    assert attention_pool_triton._launch_geometry(x, block_p)[1] > 1
    context, weights = attention_pool_triton.triton_attention_pool(x, weight, bias)
    logits = F.conv2d(x, weight, bias)
    torch.testing.assert_close(weights, logits.flatten(1).softmax(dim=1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(context, attention_pool(x, logits).flatten(1), rtol=1e-5, atol=1e-5)


def test_kernel_without_bias_and_with_unflattenable_strides(kernel_calls):
    x = torch.randn(2, 12, 9, 14)[..., ::2]  # W stride 2: H and W do not flatten into one index
    weight = torch.randn(1, 12, 1, 1)
    expected = attention_pool(x, F.conv2d(x, weight))
    torch.testing.assert_close(conv_attention_pool(x, weight, None), expected, rtol=1e-5, atol=1e-5)
    assert len(kernel_calls) == 1


def test_kernel_accumulates_low_precision_in_fp32():
    x = torch.randn(2, 48, 16, 16).to(torch.bfloat16)
    weight, bias = torch.randn(1, 48, 1, 1) * 0.3, torch.randn(1)
    context, weights = attention_pool_triton.triton_attention_pool(x, weight.to(torch.bfloat16), bias.to(torch.bfloat16))
    assert context.dtype == weights.dtype == torch.float32
    x32, w32, b32 = x.float(), weight.to(torch.bfloat16).float(), bias.to(torch.bfloat16).float()
    torch.testing.assert_close(context, attention_pool(x32, F.conv2d(x32, w32, b32)).flatten(1), rtol=1e-5, atol=1e-5)


def test_kernel_refuses_what_it_cannot_take():
    assert triton_supports(torch.zeros(1, TRITON_MAX_CHANNELS, 2, 2))
    too_wide = torch.zeros(1, TRITON_MAX_CHANNELS + 1, 2, 2)
    assert not triton_supports(too_wide)
    assert not triton_supports(torch.zeros(1, 4, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"triton_attention_pool: unsupported input \(1, 4097, 2, 2\)"):
        attention_pool_triton.triton_attention_pool(too_wide, torch.zeros(1, 4097, 1, 1), None)
