"""ContextBlock against Eq. 5 (and the Table 5 variants), recomputed here from its weights."""

import itertools

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from gcnet.layers import AffineSource, ContextBlock

from ..helpers import randomize_

POOLINGS = ("att", "avg")
FUSIONS = (("channel_add",), ("channel_mul",), ("channel_mul", "channel_add"))
TRANSFORMS = ("linear", "bottleneck", "bottleneck_relu", "bottleneck_ln_relu")


def eq5_reference(block: ContextBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. 4/5 in float64, written from the block's parameters with explicit sums."""
    x = x.double()
    n, c, h, w = x.shape
    feats = x.reshape(n, c, h * w)  # x_j as columns
    if block.pooling_type == "att":
        w_k = block.conv_mask.weight.double().reshape(c)
        b_k = block.conv_mask.bias.double()
        logits = torch.einsum("c,ncj->nj", w_k, feats) + b_k
        alpha = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        alpha = alpha / alpha.sum(dim=1, keepdim=True)
    else:
        alpha = torch.full((n, h * w), 1.0 / (h * w), dtype=torch.float64)
    context = torch.einsum("nj,ncj->nc", alpha, feats)

    def delta(branch: nn.Sequential) -> torch.Tensor:
        convs = [m for m in branch if isinstance(m, nn.Conv2d)]
        lns = [m for m in branch if isinstance(m, nn.LayerNorm)]
        has_relu = any(isinstance(m, nn.ReLU) for m in branch)
        w1 = convs[0].weight.double().flatten(1)
        t = context @ w1.T + convs[0].bias.double()
        if len(convs) == 1:  # "w/o ratio": one 1x1 conv
            return t
        if lns:
            mean = t.mean(dim=1, keepdim=True)
            var = ((t - mean) ** 2).mean(dim=1, keepdim=True)
            t = (t - mean) / torch.sqrt(var + lns[0].eps)
            t = t * lns[0].weight.double().flatten() + lns[0].bias.double().flatten()
        if has_relu:
            t = torch.clamp(t, min=0)
        return t @ convs[1].weight.double().flatten(1).T + convs[1].bias.double()

    out = x
    if block.channel_mul_conv is not None:
        out = out * (1 / (1 + torch.exp(-delta(block.channel_mul_conv))))[:, :, None, None]
    if block.channel_add_conv is not None:
        out = out + delta(block.channel_add_conv)[:, :, None, None]
    return out


@pytest.mark.parametrize("pooling,fusion,transform", list(itertools.product(POOLINGS, FUSIONS, TRANSFORMS)))
def test_output_equals_eq5(pooling, fusion, transform):
    block = randomize_(ContextBlock(32, 1 / 4, pooling, fusion, transform))
    x = torch.randn(3, 32, 5, 7)
    expected = eq5_reference(block, x)
    torch.testing.assert_close(block(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_default_is_paper_block():
    block = ContextBlock(64, 1 / 16)
    assert block.pooling_type == "att" and block.fusion_types == ("channel_add",)
    layers = list(block.channel_add_conv)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.LayerNorm, nn.ReLU, nn.Conv2d]
    assert layers[0].weight.shape == (4, 64, 1, 1)
    assert layers[1].normalized_shape == (4, 1, 1)
    assert layers[3].weight.shape == (64, 4, 1, 1)
    assert block.conv_mask.weight.shape == (1, 64, 1, 1)


def test_state_dict_keys_match_reference_layout():
    block = ContextBlock(16, 1 / 4, fusion_types=("channel_add", "channel_mul"))
    expected = {"conv_mask.weight", "conv_mask.bias"}
    for branch in ("channel_add_conv", "channel_mul_conv"):
        for idx in (0, 1, 3):
            expected |= {f"{branch}.{idx}.weight", f"{branch}.{idx}.bias"}
    assert set(block.state_dict()) == expected


@pytest.mark.parametrize("pooling", POOLINGS)
def test_attention_map_holds_the_pooling_weights(pooling):
    torch.manual_seed(0)
    block = ContextBlock(6, 1 / 2, pooling_type=pooling)
    x = torch.randn(2, 6, 3, 4)
    alpha = block.attention_map(x)
    assert alpha.shape == (2, 3, 4) and (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=(1, 2)), torch.ones(2))
    # Eq. 4: the pooled context is sum_j alpha_j x_j.
    torch.testing.assert_close(block.spatial_pool(x).flatten(1), (x * alpha[:, None]).sum(dim=(2, 3)))
    if pooling == "att":
        assert alpha.std() > 0
        torch.testing.assert_close(alpha.flatten(1), block.conv_mask(x).flatten(1).softmax(dim=1))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_new_add_block_is_identity(pooling, transform):
    torch.manual_seed(0)
    block = ContextBlock(32, 1 / 8, pooling, ("channel_add",), transform)
    x = torch.randn(2, 32, 6, 5)
    assert torch.equal(block(x), x)


def test_new_mul_block_scales_by_sigmoid_zero():
    block = ContextBlock(32, 1 / 8, fusion_types=("channel_mul",))
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(block(x), x * 0.5)


def test_conv_mask_init_is_kaiming_fan_in():
    torch.manual_seed(0)
    block = ContextBlock(2048, 1 / 16)
    weight = block.conv_mask.weight
    # Kaiming normal, fan_in = C, gain sqrt(2): std = sqrt(2 / C).
    assert abs(weight.std().item() - (2 / 2048) ** 0.5) < 0.1 * (2 / 2048) ** 0.5
    assert torch.count_nonzero(block.conv_mask.bias) == 0


@pytest.mark.parametrize("fusion", FUSIONS)
def test_one_step_gives_every_parameter_a_gradient(fusion):
    torch.manual_seed(0)
    block = ContextBlock(16, 1 / 4, fusion_types=fusion)
    x = torch.randn(4, 16, 5, 5)
    target = torch.randn(4, 16, 5, 5)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)

    def step():
        optimizer.zero_grad()
        ((block(x) - target) ** 2).mean().backward()
        grads = {name: p.grad.abs().sum().item() for name, p in block.named_parameters()}
        optimizer.step()
        return grads

    first = step()
    for name in first:
        if name.endswith(".3.weight") or name.endswith(".3.bias"):
            assert first[name] > 0, name  # the zero-initialised last convs learn first
    second = step()
    # The softmax ignores a shift of all logits: W_k's bias gets no gradient (Sum_j dl_j = 0).
    assert second.pop("conv_mask.bias") < 1e-6
    assert all(v > 0 for v in second.values()), second


@pytest.mark.parametrize("shape", [(1, 32, 9, 9), (2, 32, 1, 1), (2, 32, 3, 17), (2, 32, 16, 4)])
def test_shapes_match_reference(shape):
    block = randomize_(ContextBlock(32, 1 / 4))
    x = torch.randn(shape)
    out = block(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out.double(), eq5_reference(block, x), rtol=1e-5, atol=1e-5)


def test_single_position_context_is_the_feature():
    block = randomize_(ContextBlock(8, 1 / 2))
    x = torch.randn(2, 8, 1, 1)
    torch.testing.assert_close(block.spatial_pool(x), x)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_channels_last_matches_contiguous(fusion):
    block = randomize_(ContextBlock(32, 1 / 4, fusion_types=fusion))
    x = torch.randn(2, 32, 10, 12)
    out = block(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, block(x), rtol=1e-6, atol=1e-6)


def test_autocast_bf16_matches_fp32():
    """bf16 keeps 8 bits of mantissa: the output stays within 2% of its scale."""
    block = randomize_(ContextBlock(64, 1 / 4, fusion_types=("channel_mul", "channel_add")))
    x = torch.randn(2, 64, 12, 10)
    ref = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    err = (out.float() - ref).abs().max().item()
    assert err <= 0.02 * ref.abs().max().item(), err


def acting_block(pooling, fusion) -> ContextBlock:
    """A GC block whose fusion branches act (their last conv is not zero)."""
    torch.manual_seed(0)
    block = ContextBlock(8, 1 / 2, pooling_type=pooling, fusion_types=fusion)
    for branch in (block.channel_add_conv, block.channel_mul_conv):
        if branch is not None:
            torch.nn.init.normal_(branch[-1].weight, std=0.1)
    return block


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_inplace_forward_equals_a_new_tensor(fusion, pooling):
    block = acting_block(pooling, fusion)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        expected = block(x)
        y = x.clone()
        out = block(y, inplace=True)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # An x that autograd tracks is never written: the result is a new tensor.
    tracked = x.clone().requires_grad_()
    out = block(tracked, inplace=True)
    assert out.data_ptr() != tracked.data_ptr() and torch.equal(tracked.detach(), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "grad_mode,x_grad,block_grad,writes",
    [(False, True, True, True), (True, False, False, True), (True, True, False, False), (True, False, True, False)],
)
def test_inplace_only_where_no_gradient_needs_x(grad_mode, x_grad, block_grad, writes):
    """In place unless autograd records the call: with grad mode on, an x that requires grad, or
    a block that trains (its pooling's and fusion's backward read x as it was), gets a new z."""
    block = acting_block("att", ("channel_mul", "channel_add")).requires_grad_(block_grad)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        expected = block(x)
    given = x.clone().requires_grad_(x_grad)
    with torch.set_grad_enabled(grad_mode):
        out = block(given, inplace=True)
    assert (out.data_ptr() == given.data_ptr()) == writes
    assert torch.equal(given.detach(), expected if writes else x)
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=0)
    if out.requires_grad:
        out.sum().backward()  # what the backward reads is intact


def test_inplace_call_is_seen_by_hooks():
    """A call asking for in place is a module call: a pre-hook sees the true input, a forward
    hook the output (which is then the input tensor, as for nn.ReLU(inplace=True))."""
    block = acting_block("att", ("channel_add",))
    x = torch.randn(2, 8, 5, 6)
    seen = []
    block.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    block.register_forward_hook(lambda m, args, out: seen.append(out is args[0]))
    with torch.no_grad():
        out = block(x.clone(), inplace=True)
    assert torch.equal(seen[0], x) and seen[1] is True and not torch.equal(out, x)


def test_torchscript_matches_eager():
    block = randomize_(ContextBlock(16, 1 / 4, fusion_types=("channel_mul", "channel_add")))
    scripted = torch.jit.script(block)
    x = torch.randn(2, 16, 7, 5)
    torch.testing.assert_close(scripted(x), block(x))
    with torch.no_grad():  # TorchScript never writes into x
        given = x.clone()
        torch.testing.assert_close(scripted(given, inplace=True), block(x))
        assert torch.equal(given, x)
    avg_block = randomize_(ContextBlock(16, 1 / 4, pooling_type="avg"))
    torch.testing.assert_close(torch.jit.script(avg_block)(x), avg_block(x))


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    block = randomize_(ContextBlock(16, 1 / 4)).eval()
    x = torch.randn(2, 16, 7, 5)
    path = str(tmp_path / "context_block.onnx")
    torch.onnx.export(block, (x,), path, input_names=["x"], output_names=["z"])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = session.run(["z"], {"x": x.numpy()})
    np.testing.assert_allclose(out, block(x).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,ratio", [(64, 1 / 16), (256, 1 / 4), (2048, 1 / 16), (96, 1 / 8)])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_parameter_count_closed_form(channels, ratio, pooling, fusion):
    block = ContextBlock(channels, ratio, pooling, fusion)
    planes = int(channels * ratio)
    # Per fusion branch: 2*C*C*ratio weights + (planes + C) biases + 2*planes LN affine.
    per_branch = 2 * channels * planes + planes + channels + 2 * planes
    expected = len(fusion) * per_branch + (channels + 1 if pooling == "att" else 0)
    assert sum(p.numel() for p in block.parameters()) == expected


def test_linear_transform_parameter_count():
    block = ContextBlock(128, 1 / 16, transform="linear")
    assert sum(p.numel() for p in block.parameters()) == 128 * 128 + 128 + 128 + 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(ratio=0), "ratio must be in (0, 1]"),
        (dict(ratio=16), "ratio must be in (0, 1]"),
        (dict(ratio=-0.25), "ratio must be in (0, 1]"),
        (dict(in_channels=8, ratio=1 / 16), "in_channels * ratio must be >= 1"),
        (dict(pooling_type="max"), "pooling_type must be one of ('att', 'avg')"),
        (dict(fusion_types=("channel_concat",)), "fusion_types must be drawn from"),
        (dict(fusion_types=()), "fusion_types must not be empty"),
        (dict(fusion_types="channel_add"), "fusion_types must be a sequence"),
        (dict(transform="mlp"), "transform must be one of"),
        (dict(in_channels=0), "in_channels must be a positive int"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    args = dict(in_channels=64, ratio=1 / 4)
    args.update(kwargs)
    with pytest.raises(ValueError, match="ContextBlock: ") as info:
        ContextBlock(**args)
    assert message in str(info.value)


@pytest.mark.parametrize("shape", [(2, 16, 8), (2, 16, 4, 4, 4), (2, 8, 4, 4)])
def test_bad_input_shape_raises_value_error(shape):
    block = ContextBlock(16, 1 / 4)
    with pytest.raises(ValueError, match=r"input x must have shape \(N, 16, H, W\), got \["):
        block(torch.randn(shape))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("pooling,fusion", list(itertools.product(POOLINGS, FUSIONS)))
def test_output_from_the_source_equals_eq5_on_x(pooling, fusion, batch):
    """forward_from_source computes z from h, where x = scale * P h + shift (a 1x1 conv and a
    fixed norm): Eq. 5 on x, in float64, to float32 rounding; for one image with the fusion in
    the projection's weights, for a batch in place after it."""
    block = acting_block(pooling, fusion).eval()
    g = torch.Generator().manual_seed(1)
    h, projection = torch.randn(batch, 4, 6, 5, generator=g), torch.randn(8, 4, generator=g)
    scale, shift = torch.rand(8, generator=g) + 0.5, torch.randn(8, generator=g)
    x = torch.einsum("ck,nkhw->nchw", projection, h) * scale[:, None, None] + shift[:, None, None]
    with torch.no_grad():
        z = block.forward_from_source(AffineSource(h, projection, scale, shift))
    torch.testing.assert_close(z.double(), eq5_reference(block, x), rtol=1e-5, atol=1e-5)


def test_output_from_the_source_is_for_inference_only():
    """In training, where autograd records, and with fuse_into_producer off, the caller runs
    the block on x (None)."""
    block = acting_block("att", ("channel_add",)).eval()
    source = AffineSource(torch.randn(1, 4, 3, 3), torch.randn(8, 4), torch.ones(8), torch.zeros(8))
    assert block.forward_from_source(source) is None  # gradients recorded
    with torch.no_grad():
        assert block.train().forward_from_source(source) is None
        block.eval().fuse_into_producer = False
        assert block.forward_from_source(source) is None
        block.fuse_into_producer = True
        assert block.forward_from_source(source) is not None
