"""Attention pooling: the fast path (conv_attention_pool) equals the definition
(attention_pool over conv2d logits), outputs and gradients, in both memory layouts, on the CPU
branches and on the batched branches CUDA takes (forced here on the CPU); in bf16 and fp16 it
is as accurate as the definition against float64, under autocast it keeps its dtypes, and
empty inputs give empty or zero results."""

import importlib
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from gcnet.layers import AffineSource, ContextBlock, attention_pool, conv_attention_pool

# The module (gcnet.layers.attention_pool is also the name of the function).
attention_pool_module = importlib.import_module("gcnet.layers.attention_pool")

SHAPES = [(2, 6, 3, 4), (1, 16, 1, 1), (3, 32, 7, 5), (2, 64, 20, 31)]


def test_attention_pool_is_softmax_weighted_sum():
    x = torch.randn(2, 6, 3, 4)
    logits = torch.randn(2, 1, 3, 4)
    weights = logits.flatten(1).softmax(dim=1)
    expected = (x.flatten(2) * weights[:, None, :]).sum(dim=2)
    torch.testing.assert_close(attention_pool(x, logits).flatten(1), expected)


def reference_and_fast(x, weight, bias):
    """Outputs and gradients (x, weight, bias) of both paths for the same upstream gradient."""
    results = []
    for pool in (lambda *a: attention_pool(a[0], F.conv2d(*a)), conv_attention_pool):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        leaves[0] = leaves[0].contiguous(memory_format=torch.channels_last) if _is_cl(x) else leaves[0]
        leaves[0].retain_grad()
        out = pool(*leaves)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        results.append((out.detach(), *[t.grad for t in leaves]))
    return results


def _is_cl(x):
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fast_path_equals_definition(shape, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).contiguous(memory_format=layout)
    weight, bias = torch.randn(1, shape[1], 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    (ref, *ref_grads), (fast, *fast_grads) = reference_and_fast(x, weight, bias)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    for name, a, b in zip(["x", "weight", "bias"], fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    # The gradient keeps the input's layout: nothing was copied into another one.
    assert fast_grads[0].is_contiguous(memory_format=layout)


def test_fast_path_gradcheck():
    g = torch.Generator().manual_seed(1)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
        weight = torch.randn(1, 5, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(conv_attention_pool, (x, weight, bias))


def test_compiled_block_takes_the_reference_path_and_agrees():
    torch.manual_seed(0)
    block = ContextBlock(16, 1 / 4, fusion_types=("channel_add", "channel_mul"))
    torch.nn.init.normal_(block.channel_add_conv[-1].weight, std=0.1)
    x = torch.randn(2, 16, 6, 7)
    graphs = []

    def recording_backend(graph_module, example_inputs):  # the compiler's graph, run as is
        graphs.append(str(graph_module.graph))
        return graph_module.forward

    compiled = torch.compile(block, backend=recording_backend)
    torch.testing.assert_close(compiled(x), block(x), rtol=1e-5, atol=1e-5)
    graph = "".join(graphs)
    assert "softmax" in graph and "autograd_function_apply" not in graph


def test_other_strides_are_handled():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 5, 6, generator=g).transpose(2, 3)  # (N, C, W, H) strides
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(1, 4, 1, 1, generator=g), torch.randn(1, generator=g)
    (ref, *ref_grads), (fast, *fast_grads) = reference_and_fast(x, weight, bias)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_affine_source_backward_equals_definition(layout):
    """Given x = a * (P h) + b, the backward reads h and saves no tensor of x's size."""
    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 8, 7, 9, generator=g).contiguous(memory_format=layout)
    projection, scale, shift = (
        torch.randn(24, 8, generator=g) * 0.3,
        torch.rand(24, generator=g) + 0.5,
        torch.randn(24, generator=g),
    )
    x = (F.conv2d(h, projection[:, :, None, None]) * scale[:, None, None] + shift[:, None, None]).contiguous(
        memory_format=layout
    )
    weight, bias = torch.randn(1, 24, 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    source = AffineSource(h, projection, scale, shift)
    upstream = torch.linspace(-1, 1, 48).reshape(2, 24, 1, 1)
    results = []
    for pool in (
        lambda *a: attention_pool(a[0], F.conv2d(*a)),
        conv_attention_pool,
        partial(conv_attention_pool, source=source),
    ):
        leaves = [t.detach().clone().requires_grad_() for t in (weight, bias)]
        x_leaf = x.detach().clone(memory_format=layout).requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t.shape) or t, lambda t: t):
            out = pool(x_leaf, *leaves)
        out.backward(upstream)
        results.append((out.detach(), x_leaf.grad, *[t.grad for t in leaves]))
        assert (x.shape in saved) == (len(results) < 3), f"path {len(results)}: saved {saved}"
    for fast in results[1:]:
        for name, a, b in zip(["out", "x", "weight", "bias"], fast, results[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.fixture
def batched_products(monkeypatch):
    """Forces the branches that CUDA takes (batched products) on CPU tensors; counts their uses."""
    uses = []
    monkeypatch.setattr(attention_pool_module, "_batched_products", lambda t: uses.append(t.device) or True)
    return uses


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batched_branches_equal_definition(shape, layout, batched_products):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).contiguous(memory_format=layout)
    weight, bias = torch.randn(1, shape[1], 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    (ref, *ref_grads), (fast, *fast_grads) = reference_and_fast(x, weight, bias)
    # Forward: logits and context; backward: the dot, the weighted sum and the rank-2 update.
    assert len(batched_products) == 5
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    for name, a, b in zip(["x", "weight", "bias"], fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    assert fast_grads[0].is_contiguous(memory_format=layout)


def test_batched_branches_with_an_affine_source(batched_products):
    test_affine_source_backward_equals_definition(torch.channels_last)
    assert batched_products


def relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    return ((value.double() - exact).norm() / exact.norm()).item()


def low_precision_errors(pool, x, weight, bias, upstream, dtype):
    """Relative errors against float64 of the output and of the gradients of x and W_k, for
    ``pool`` run on ``x`` in ``dtype`` (W_k and b stay fp32, as under autocast)."""
    results = {}
    for run_dtype in (torch.float64, dtype):
        params = torch.float64 if run_dtype == torch.float64 else torch.float32
        x_leaf = x.to(run_dtype).requires_grad_()
        w_leaf = weight.to(params).clone().requires_grad_()
        out = pool(x_leaf, w_leaf, bias.to(params))
        out.backward(upstream.to(out.dtype))
        results[run_dtype] = (out.detach(), x_leaf.grad, w_leaf.grad)
    return [relative_error(a, b) for a, b in zip(results[dtype], results[torch.float64])]


def reference_pool(x, weight, bias):
    """The definition in x's dtype, as a model in that dtype (or under autocast) computes it."""
    return attention_pool(x, F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype)))


def low_precision_case(seed: int, layout):
    """Non-negative features with a common offset (post-ReLU maps), where g . x_j - g . context
    cancels: the case that exposes a backward in low precision."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 512, 24, 28, generator=g) + 3).relu().contiguous(memory_format=layout)
    weight = torch.randn(1, 512, 1, 1, generator=g) * (2 / 512) ** 0.5
    return x, weight, torch.randn(1, generator=g), torch.randn(2, 512, 1, 1, generator=g)


def assert_as_accurate_as_the_definition(dtype):
    """Errors against float64 (output, x grad, W_k grad), summed over three cases in both
    layouts, within 1.5x of the definition's in the same dtype."""
    ours, reference = torch.zeros(3), torch.zeros(3)
    for seed, layout in [(0, torch.contiguous_format), (1, torch.channels_last), (2, torch.contiguous_format)]:
        case = low_precision_case(seed, layout)
        ours += torch.tensor(low_precision_errors(conv_attention_pool, *case, dtype))
        reference += torch.tensor(low_precision_errors(reference_pool, *case, dtype))
    for name, a, b in zip(["output", "x grad", "W_k grad"], ours.tolist(), reference.tolist()):
        assert a <= 1.5 * b, f"{name}: error {a / 3:.2e} against the definition's {b / 3:.2e}"


@pytest.mark.parametrize("batched", [False, True], ids=["cpu_branches", "batched_branches"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_is_as_accurate_as_the_definition(dtype, batched, monkeypatch):
    if batched:
        monkeypatch.setattr(attention_pool_module, "_batched_products", lambda t: True)
    assert_as_accurate_as_the_definition(dtype)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("batched", [False, True], ids=["cpu_branches", "batched_branches"])
def test_autocast_leaves_the_pooling_alone(autocast_dtype, batched, monkeypatch):
    """Under autocast the pooling of an fp32 x computes what it computes outside, bit for bit."""
    if batched:
        monkeypatch.setattr(attention_pool_module, "_batched_products", lambda t: True)
    x, weight, bias, upstream = low_precision_case(3, torch.contiguous_format)
    results = []
    for enabled in (False, True):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=enabled):
            out = conv_attention_pool(*leaves)
            out.backward(upstream)
        results.append((out, *[t.grad for t in leaves]))
    for name, plain, autocast in zip(["output", "x", "weight", "bias"], *results):
        assert autocast.dtype == torch.float32 and torch.equal(autocast, plain), name


EMPTY_SHAPES = [(0, 8, 5, 6), (2, 8, 0, 6), (2, 8, 5, 0), (0, 8, 0, 0)]


@pytest.mark.parametrize("batched", [False, True], ids=["cpu_branches", "batched_branches"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=str)
def test_empty_inputs(shape, layout, batched, monkeypatch):
    """No images: no context; no positions: the empty sum, zero; gradients zero."""
    if batched:
        monkeypatch.setattr(attention_pool_module, "_batched_products", lambda t: True)
    check_empty_input(shape, layout)


def check_empty_input(shape, layout):
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
    weight, bias = torch.randn(1, shape[1], 1, 1, requires_grad=True), torch.randn(1, requires_grad=True)
    out = conv_attention_pool(x, weight, bias)
    assert out.shape == (shape[0], shape[1], 1, 1) and out.dtype == x.dtype
    assert torch.equal(out, torch.zeros_like(out))
    out.backward(torch.ones_like(out))
    assert x.grad.shape == x.shape
    assert torch.equal(weight.grad, torch.zeros_like(weight)) and torch.equal(bias.grad, torch.zeros_like(bias))
