"""Attention pooling: the fast path (conv_attention_pool) equals the definition
(attention_pool over conv2d logits), outputs and gradients, in both memory layouts."""
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from gcnet.layers import AffineSource, ContextBlock, attention_pool, conv_attention_pool

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
    projection, scale, shift = torch.randn(24, 8, generator=g) * 0.3, torch.rand(24, generator=g) + 0.5, torch.randn(24, generator=g)
    x = (F.conv2d(h, projection[:, :, None, None]) * scale[:, None, None] + shift[:, None, None]).contiguous(memory_format=layout)
    weight, bias = torch.randn(1, 24, 1, 1, generator=g) * 0.3, torch.randn(1, generator=g)
    source = AffineSource(h, projection, scale, shift)
    upstream = torch.linspace(-1, 1, 48).reshape(2, 24, 1, 1)
    results = []
    for pool in (lambda *a: attention_pool(a[0], F.conv2d(*a)), conv_attention_pool, partial(conv_attention_pool, source=source)):
        leaves = [t.detach().clone().requires_grad_() for t in (weight, bias)]
        x_leaf = x.detach().clone(memory_format=layout).requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
            out = pool(x_leaf, *leaves)
        out.backward(upstream)
        results.append((out.detach(), x_leaf.grad, *[t.grad for t in leaves]))
        assert (x.shape in saved) == (len(results) < 3), f"path {len(results)}: saved {saved}"
    for fast in results[1:]:
        for name, a, b in zip(["out", "x", "weight", "bias"], fast, results[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
