"""NonLocalBlock (Eq. 1) and SimplifiedNonLocalBlock (Eq. 2/3) against explicit computations."""

import math

import pytest
import torch
from torch import nn

from gcnet.layers import NON_LOCAL_MODES, NonLocalBlock, SimplifiedNonLocalBlock

from ..helpers import randomize_


def conv1x1(conv: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv applied to one feature vector, in float64."""
    out = conv.weight.double().flatten(1) @ v
    return out + conv.bias.double() if conv.bias is not None else out


def eq1_reference(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1 for one image, pair by pair: z_i = x_i + W_z sum_j omega_ij W_v x_j."""
    c, h, w = x.shape
    pos = [x[:, i // w, i % w].double() for i in range(h * w)]
    n_p = len(pos)
    if block.mode == "gaussian":
        f = [[math.exp(torch.dot(pos[i], pos[j]).item()) for j in range(n_p)] for i in range(n_p)]
    else:
        q = [conv1x1(block.theta, v) for v in pos]
        k = [conv1x1(block.phi, v) for v in pos]
        if block.mode == "embedded_gaussian":
            scale = math.sqrt(block.inter_channels) if block.use_scale else 1.0
            f = [[math.exp(torch.dot(q[i], k[j]).item() / scale) for j in range(n_p)] for i in range(n_p)]
        elif block.mode == "dot_product":
            f = [[torch.dot(q[i], k[j]).item() for j in range(n_p)] for i in range(n_p)]
        else:  # concat
            w_f = block.concat_project.weight.double().flatten()
            f = [[max(torch.dot(w_f, torch.cat([q[i], k[j]])).item(), 0.0) for j in range(n_p)] for i in range(n_p)]
    if block.mode in ("gaussian", "embedded_gaussian"):
        omega = [[f[i][j] / sum(f[i]) for j in range(n_p)] for i in range(n_p)]
    else:
        omega = [[f[i][j] / n_p for j in range(n_p)] for i in range(n_p)]
    values = [conv1x1(block.g, v) for v in pos]
    z = []
    for i in range(n_p):
        y_i = sum(omega[i][j] * values[j] for j in range(n_p))
        z.append(pos[i] + conv1x1(block.conv_out, y_i))
    return torch.stack(z, dim=1).reshape(c, h, w)


@pytest.mark.parametrize("mode", NON_LOCAL_MODES)
@pytest.mark.parametrize("use_scale", [False, True])
def test_non_local_equals_explicit_attention(mode, use_scale):
    # Small weights keep exp() of the Gaussian logits in range.
    block = randomize_(NonLocalBlock(6, mode=mode, use_scale=use_scale), seed=1, scale=0.25)
    x = torch.randn(2, 6, 3, 4) * 0.5
    out = block(x)
    for b in range(2):
        torch.testing.assert_close(out[b].double(), eq1_reference(block, x[b]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", NON_LOCAL_MODES)
def test_pairwise_weights_rows(mode):
    block = randomize_(NonLocalBlock(8, mode=mode))
    weights = block.pairwise_weights(torch.randn(2, 8, 4, 5))
    assert weights.shape == (2, 20, 20)
    if mode in ("gaussian", "embedded_gaussian"):
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 20))
    if mode == "concat":
        assert (weights >= 0).all()


@pytest.mark.parametrize("mode", NON_LOCAL_MODES)
@pytest.mark.parametrize("norm", [None, nn.BatchNorm2d])
def test_new_non_local_block_is_identity(mode, norm):
    block = NonLocalBlock(16, mode=mode, norm=norm).eval()
    x = torch.randn(2, 16, 5, 6)
    assert torch.equal(block(x), x)


def test_non_local_norm_follows_w_z():
    block = randomize_(NonLocalBlock(8, norm=lambda c: nn.GroupNorm(2, c)))
    x = torch.randn(2, 8, 3, 3)
    residual = block(x) - x
    # GroupNorm output has zero mean per group before its affine transform.
    normalized = (residual - block.norm.bias[None, :, None, None]) / block.norm.weight[None, :, None, None]
    torch.testing.assert_close(normalized.reshape(2, 2, -1).mean(-1), torch.zeros(2, 2), atol=1e-5, rtol=0)


def test_non_local_parameter_count():
    """Table 5(a): one NL block in c4 (C=1024, C'=512) adds 2.1M parameters (44.4M -> 46.5M)."""
    block = NonLocalBlock(1024)
    assert sum(p.numel() for p in block.parameters()) == 3 * (1024 * 512 + 512) + 512 * 1024 + 1024


def test_snl_eq2_equals_eq3():
    """Eq. 2 (W_v inside the sum, per position) equals the block's Eq. 3 order."""
    block = randomize_(SimplifiedNonLocalBlock(12))
    x = torch.randn(2, 12, 4, 6)
    w_k = block.conv_mask.weight.double().flatten()
    w_v = block.channel_add_conv[0]
    for b in range(2):
        pos = x[b].double().flatten(1).T  # (N_p, C)
        logits = pos @ w_k + block.conv_mask.bias.double()
        alpha = torch.softmax(logits, dim=0)
        transformed = torch.stack([conv1x1(w_v, v) for v in pos])  # W_v x_j for every j
        expected = pos + (alpha[:, None] * transformed).sum(dim=0)  # broadcast over i
        torch.testing.assert_close(block(x)[b].double().flatten(1).T, expected, rtol=1e-5, atol=1e-5)


def test_snl_layout_and_parameters():
    block = SimplifiedNonLocalBlock(1024)
    assert len(block.channel_add_conv) == 1
    # Table 5(a): one SNL block in c4 adds 1.0M parameters (44.4M -> 45.4M).
    assert sum(p.numel() for p in block.parameters()) == 1024 * 1024 + 1024 + 1024 + 1
    assert torch.equal(block(torch.ones(1, 1024, 2, 2)), torch.ones(1, 1024, 2, 2))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mode="cosine"), "mode must be one of"),
        (dict(reduction=0), "reduction must be a positive int"),
        (dict(in_channels=1, reduction=2), "in_channels // reduction must be >= 1"),
    ],
)
def test_non_local_bad_arguments(kwargs, message):
    args = dict(in_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match="NonLocalBlock: ") as info:
        NonLocalBlock(**args)
    assert message in str(info.value)


def test_non_local_bad_input():
    with pytest.raises(ValueError, match=r"NonLocalBlock: input x must have shape \(N, 8, H, W\)"):
        NonLocalBlock(8)(torch.randn(2, 4, 3, 3))
