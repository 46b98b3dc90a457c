"""Checks of the Triton attention-pooling kernel, run by test_attention_pool_triton.py in a
pytest subprocess with TRITON_INTERPRET=1 (Triton reads it when a kernel is defined), where
the kernel runs on CPU tensors. Not collected by the main run (no ``test_`` prefix)."""

import contextlib
import importlib
import os
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from gcnet.layers import attention_pool, attention_pool_triton, conv_attention_pool
from gcnet.layers.attention_pool import DISABLE_TRITON_ENV, TRITON_MAX_CHANNELS, triton_supports

from . import test_attention_pool as pytorch_path_tests
from .test_attention_pool import (
    EMPTY_SHAPES,
    SHAPES,
    assert_as_accurate_as_the_definition,
    check_empty_input,
    low_precision_errors,
    reference_and_fast,
    reference_pool,
    relative_error,
)

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/layers/test_attention_pool_triton.py"
attention_pool_module = importlib.import_module("gcnet.layers.attention_pool")


class RecordingKernel:
    """Stands for the kernel: records the device guard, data pointer, shape and strides of
    each launch's ``x``, then launches the real kernel (or raises ``error``)."""

    def __init__(self, kernel, error=None):
        self.kernel, self.error, self.launches, self.guards = kernel, error, [], []

    def __getitem__(self, grid):
        def launch(x, *args, **options):
            self.launches.append((x.data_ptr(), tuple(x.shape), x.stride(), list(self.guards)))
            if self.error is not None:
                raise self.error
            return self.kernel[grid](x, *args, **options)

        return launch


@pytest.fixture
def kernel(monkeypatch):
    """The kernel's launches through conv_attention_pool, recorded; the guard that
    triton_attention_pool holds around them, recorded too."""
    recording = RecordingKernel(attention_pool_triton._partial_pool_kernel)
    monkeypatch.setattr(attention_pool_triton, "_partial_pool_kernel", recording)
    on_device = attention_pool_triton.on_device

    @contextlib.contextmanager
    def recorded_guard(device):
        with on_device(device):
            recording.guards.append(device)
            yield
            recording.guards.pop()

    monkeypatch.setattr(attention_pool_triton, "on_device", recorded_guard)
    monkeypatch.setattr(attention_pool_module, "_triton_failure", None)
    return recording


def assert_paths_agree(x, weight, bias):
    (ref, *ref_grads), (fast, *fast_grads) = reference_and_fast(x, weight, bias)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    for name, a, b in zip(["x", "weight", "bias"], fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", SHAPES + [(3, 37, 7, 5), (2, 100, 12, 13)], ids=str)
def test_kernel_path_equals_definition(shape, layout, kernel):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).contiguous(memory_format=layout)
    weight, bias = torch.randn(1, shape[1], 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    assert_paths_agree(x, weight, bias)
    # One launch, on x's strides, under x's device guard.
    assert [launch[1:] for launch in kernel.launches] == [(x.shape, x.stride(), [x.device])]


def test_the_guard_makes_x_device_current():
    guard = attention_pool_triton.on_device(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(attention_pool_triton.on_device(torch.device("cpu")), contextlib.nullcontext)


def test_kernel_splits_merge_into_the_softmax():
    """Several programs per image (a split of the positions each) merge into Eq. 5's weights."""
    x = torch.randn(2, 64, 20, 31)
    weight, bias = torch.randn(1, 64, 1, 1) * 0.3, torch.randn(1)
    assert attention_pool_triton.plan_launch(x, weight, bias).grid == (2, 4)  # 10 tiles of 64x64 in 4 splits
    context, weights = attention_pool_triton.triton_attention_pool(x, weight, bias)
    logits = F.conv2d(x, weight, bias)
    torch.testing.assert_close(weights, logits.flatten(1).softmax(dim=1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(context, attention_pool(x, logits).flatten(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("autocast_dtype", [torch.float16, torch.bfloat16], ids=str)
def test_the_merge_runs_in_fp32_under_autocast(autocast_dtype):
    """Three splits of 128 positions of x = 1000 each hold a partial sum of 128000, past fp16's
    65504: the merge must not run in autocast's dtype."""
    x = torch.full((1, 4, 16, 17), 1000.0)
    weight = torch.zeros(1, 4, 1, 1)  # uniform weights: the context is the mean, 1000
    assert attention_pool_triton.plan_launch(x, weight, None).grid == (1, 3)
    with torch.autocast("cpu", dtype=autocast_dtype):
        context, weights = attention_pool_triton.triton_attention_pool(x, weight, None)
        out = conv_attention_pool(x, weight, None)
    assert context.dtype == weights.dtype == out.dtype == torch.float32
    assert torch.equal(context, torch.full((1, 4), 1000.0)) and torch.equal(out, torch.full((1, 4, 1, 1), 1000.0))
    assert torch.equal(weights, torch.full((1, 16 * 17), 1 / (16 * 17)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_is_as_accurate_as_the_definition(dtype, kernel):
    """Forward and backward in bf16 and fp16 against float64, both layouts: within 1.5x of the
    definition's errors (the kernel's fp32 forward is more accurate than the definition)."""
    assert_as_accurate_as_the_definition(dtype)
    assert [launch[1] for launch in kernel.launches] == [(2, 512, 24, 28)] * 3


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast_leaves_the_kernel_path_alone(autocast_dtype, kernel, monkeypatch):
    pytorch_path_tests.test_autocast_leaves_the_pooling_alone(autocast_dtype, False, monkeypatch)
    assert len(kernel.launches) == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_kernel_accumulates_low_precision_in_fp32(dtype):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 48, 16, 16, generator=g).to(dtype)
    weight, bias = torch.randn(1, 48, 1, 1, generator=g).to(dtype), torch.randn(1, generator=g).to(dtype)
    context, weights = attention_pool_triton.triton_attention_pool(x, weight, bias)
    assert context.dtype == weights.dtype == torch.float32
    x64, w64, b64 = x.double(), weight.double(), bias.double()
    exact = attention_pool(x64, F.conv2d(x64, w64, b64)).flatten(1)
    assert relative_error(context, exact) < 1e-5  # fp32 sums of fp16/bf16 values (in bf16/fp16: 1e-3)


def test_widest_input(kernel):
    """4096 channels: sums of 4096 terms, to fp32 rounding against float64."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, TRITON_MAX_CHANNELS, 3, 5, generator=g)
    weight, bias = torch.randn(1, TRITON_MAX_CHANNELS, 1, 1, generator=g) * 0.02, torch.randn(1, generator=g)
    upstream = torch.randn(2, TRITON_MAX_CHANNELS, 1, 1, generator=g)
    errors = low_precision_errors(conv_attention_pool, x, weight, bias, upstream, torch.float32)
    assert max(errors) < 1e-5, errors
    assert [launch[1] for launch in kernel.launches] == [x.shape]


# Views of a (3, 20, 9, 14) tensor that flatten H and W into one index or not, none contiguous.
STRIDED_VIEWS = {
    "storage offset": lambda t: t[1:, 3:15],  # channels 3-14 of images 1-2: stride_n = 20*126
    "odd strides": lambda t: t[::2, ::3, :, 1:],  # every other image, every third channel, W cropped
    "W stride 2": lambda t: t[..., ::2],
    "transposed H and W": lambda t: t.transpose(2, 3),
    "expanded batch": lambda t: t[:1, :6].expand(4, 6, 9, 14),  # stride_n = 0
    "expanded H": lambda t: t[:2, :6, :1].expand(2, 6, 5, 14),  # stride_h = 0
    "expanded channels": lambda t: t[:2, :1].expand(2, 7, 9, 14),  # stride_c = 0
}


@pytest.mark.parametrize("name", list(STRIDED_VIEWS))
def test_kernel_reads_any_strides_in_place(name, kernel):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(3, 20, 9, 14, generator=g)
    channels = STRIDED_VIEWS[name](base).shape[1]
    weight, bias = torch.randn(1, channels, 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    results = []
    for pool in (reference_pool, conv_attention_pool):
        leaf = base.clone().requires_grad_()
        x = STRIDED_VIEWS[name](leaf)
        out = pool(x, weight, bias)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        results.append((out.detach(), leaf.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert kernel.launches == [(x.data_ptr(), x.shape, x.stride(), [x.device])]  # x itself: no copy


def test_offsets_beyond_2_to_the_31():
    """Channel 2 of this image starts 2**31 + 256 elements in: 32-bit offsets would read
    elsewhere. Only the pages read are touched, so the 4 GiB storage costs a few kB."""
    stride_c = 2**30 + 128
    storage = torch.empty(2 * stride_c + 64, dtype=torch.float16)
    x = storage.as_strided((1, 3, 8, 8), (3 * stride_c, stride_c, 8, 1))
    x.copy_(torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(6)))
    weight, bias = torch.randn(1, 3, 1, 1), torch.randn(1)
    context, weights = attention_pool_triton.triton_attention_pool(x, weight, bias)
    x32 = x.float()
    logits = F.conv2d(x32, weight, bias)
    torch.testing.assert_close(context, attention_pool(x32, logits).flatten(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights, logits.flatten(1).softmax(dim=1), rtol=1e-5, atol=1e-7)


def test_float64_takes_the_pytorch_path(kernel):
    """The kernel computes in fp32: float64 (gradcheck's dtype) must not reach it."""
    g = torch.Generator().manual_seed(1)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
        weight = torch.randn(1, 5, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True)
        assert not triton_supports(x)
        assert torch.autograd.gradcheck(conv_attention_pool, (x, weight, bias))
    assert kernel.launches == []


@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
def test_empty_inputs_take_the_pytorch_path(shape, kernel):
    assert not triton_supports(torch.zeros(shape))
    check_empty_input(shape, torch.contiguous_format)
    assert kernel.launches == []


def test_kernel_refuses_what_it_cannot_take():
    assert triton_supports(torch.zeros(1, TRITON_MAX_CHANNELS, 2, 2))
    too_wide = torch.zeros(1, TRITON_MAX_CHANNELS + 1, 2, 2)
    assert not triton_supports(too_wide)
    assert not triton_supports(torch.zeros(1, 4, 2, 2, dtype=torch.int32))
    assert not triton_supports(torch.zeros(1, 4, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"triton_attention_pool: unsupported input \(1, 4097, 2, 2\)"):
        attention_pool_triton.triton_attention_pool(too_wide, torch.zeros(1, 4097, 1, 1), None)


def test_the_switch_turns_the_kernel_off(kernel, monkeypatch):
    x, weight = torch.randn(2, 8, 5, 6), torch.randn(1, 8, 1, 1)
    for value, takes_kernel in [("1", False), ("0", True), ("", True)]:
        monkeypatch.setenv(DISABLE_TRITON_ENV, value)
        assert triton_supports(x) == takes_kernel
        kernel.launches.clear()
        torch.testing.assert_close(conv_attention_pool(x, weight, None), attention_pool(x, F.conv2d(x, weight)))
        assert len(kernel.launches) == int(takes_kernel)


def test_a_failing_kernel_warns_once_and_falls_back(kernel):
    kernel.error = RuntimeError("PTX .version 8.7 does not support .target sm_120\nmore details")
    x, weight, bias = torch.randn(2, 8, 5, 6), torch.randn(1, 8, 1, 1), torch.randn(1)
    expected = attention_pool(x, F.conv2d(x, weight, bias))
    with pytest.warns(RuntimeWarning) as warned:
        out = conv_attention_pool(x, weight, bias)
    assert [str(w.message) for w in warned] == [
        "gcnet: the Triton attention-pooling kernel failed (RuntimeError: PTX .version 8.7 does not support "
        ".target sm_120); attention pooling uses PyTorch from now on. Set GCNET_DISABLE_TRITON=1 to choose "
        "PyTorch from the start."
    ]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        torch.testing.assert_close(conv_attention_pool(x, weight, bias), expected, rtol=1e-5, atol=1e-5)
    assert len(kernel.launches) == 1 and not triton_supports(x)  # not tried again


def test_a_failing_import_falls_back(kernel, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcnet.layers.attention_pool_triton", None)  # import fails
    monkeypatch.delattr(sys.modules["gcnet.layers"], "attention_pool_triton")
    x, weight = torch.randn(2, 8, 5, 6), torch.randn(1, 8, 1, 1)
    with pytest.warns(
        RuntimeWarning,
        match=r"kernel failed \(ModuleNotFoundError: import of gcnet.layers.attention_pool_triton halted",
    ):
        out = conv_attention_pool(x, weight, None)
    torch.testing.assert_close(out, attention_pool(x, F.conv2d(x, weight)), rtol=1e-5, atol=1e-5)


def test_out_of_memory_is_not_the_kernel_failing(kernel):
    kernel.error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    x, weight = torch.randn(2, 8, 5, 6), torch.randn(1, 8, 1, 1)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="Tried to allocate 2.00 GiB"):
        conv_attention_pool(x, weight, None)
    assert triton_supports(x)  # the kernel stays in use
