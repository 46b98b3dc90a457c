"""gcnet.layers.fold_norm: a fixed BatchNorm folded into the conv before it computes the same
function; a BatchNorm whose statistics are not fixed is left alone."""

import pytest
import torch
from torch import nn

from gcnet.layers import BATCH_NORMS, fixed_norm_affine, fold_affine_into_conv, fold_norm_into_conv


def random_statistics_(norm: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    c = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(c, generator=g))
        norm.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
        if norm.weight is not None:
            norm.weight.copy_(torch.randn(c, generator=g))
            norm.bias.copy_(torch.randn(c, generator=g))
    return norm


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.Conv2d(6, 8, 3, stride=2, bias=True),
        nn.Conv2d(6, 8, 1, groups=2),
        nn.Conv1d(6, 8, 3),
        nn.Conv3d(6, 8, 1),
    ],
    ids=["3x3 no bias", "strided with bias", "grouped", "1d", "3d"],
)
def test_a_folded_conv_computes_conv_then_norm(conv):
    torch.manual_seed(0)
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[conv.weight.dim() - 2](8)
    random_statistics_(norm).eval()
    x = torch.randn(2, 6, *([7] * (conv.weight.dim() - 2)))
    with torch.no_grad():
        expected = norm(conv(x)).double()
        assert fold_norm_into_conv(conv, norm)
        folded = conv(x).double()
    assert conv.bias is not None and conv.bias.dtype == conv.weight.dtype == torch.float32
    assert (folded - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_the_folded_weights_are_rounded_once_from_float64():
    """conv(x) * scale + shift in float64 equals the folded conv in float64 within one rounding."""
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(4, 5, 3).double(), random_statistics_(nn.BatchNorm2d(5)).double().eval()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = norm(conv(x))
        fold_norm_into_conv(conv, norm)
        torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


def test_affine_and_missing_affine_parameters():
    norm = random_statistics_(nn.BatchNorm2d(3, affine=False)).eval()
    scale, shift = fixed_norm_affine(norm)
    expected_scale = (norm.running_var.double() + norm.eps).rsqrt()
    torch.testing.assert_close(scale, expected_scale)
    torch.testing.assert_close(shift, -norm.running_mean.double() * expected_scale)
    assert scale.dtype == torch.float64


def test_norms_without_fixed_statistics_are_not_folded():
    conv = nn.Conv2d(3, 4, 1)
    weight = conv.weight.detach().clone()
    training = random_statistics_(nn.BatchNorm2d(4)).train()
    batch_statistics = nn.BatchNorm2d(4, track_running_stats=False).eval()

    class BatchNormAct(nn.BatchNorm2d):  # as timm's: an activation after the norm
        def forward(self, x):
            return torch.relu(super().forward(x))

    for norm in (training, batch_statistics, BatchNormAct(4).eval(), nn.GroupNorm(2, 4), nn.LayerNorm([4, 1, 1])):
        assert fixed_norm_affine(norm) is None
        assert not fold_norm_into_conv(conv, norm)
    assert torch.equal(conv.weight, weight)
    assert BATCH_NORMS == (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def test_frozen_types_are_folded_in_every_mode():
    class Frozen(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.eps = 1e-5
            for name, value in (("weight", 2.0), ("bias", 1.0), ("running_mean", 0.5), ("running_var", 4.0)):
                self.register_buffer(name, torch.full((c,), value))

    frozen = Frozen(2).train()
    assert fixed_norm_affine(frozen) is None
    scale, shift = fixed_norm_affine(frozen, frozen_types=(Frozen,))
    torch.testing.assert_close(scale, torch.full((2,), 2.0 / (4.0 + 1e-5) ** 0.5, dtype=torch.float64))
    torch.testing.assert_close(shift, 1.0 - 0.5 * scale)


def test_sync_batchnorm_in_eval_is_folded():
    """SyncBatchNorm outside training is the BatchNorm of its running statistics."""
    norm = random_statistics_(nn.SyncBatchNorm(4)).eval()
    scale, shift = fixed_norm_affine(norm)
    y = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = nn.functional.batch_norm(
            y, *(t.double() for t in (norm.running_mean, norm.running_var, norm.weight, norm.bias)), eps=norm.eps
        )
    torch.testing.assert_close(y * scale[:, None, None] + shift[:, None, None], expected)
    assert fixed_norm_affine(norm.train()) is None


def test_fold_keeps_requires_grad_and_rejects_wrong_channel_counts():
    conv = nn.Conv2d(3, 4, 1)
    conv.weight.requires_grad_(False)
    fold_affine_into_conv(conv, torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    assert not conv.weight.requires_grad and not conv.bias.requires_grad
    message = r"scale and shift must have 4 channels \(the conv's outputs\), got \(3,\) and \(4,\)"
    with pytest.raises(ValueError, match=message):
        fold_affine_into_conv(conv, torch.ones(3), torch.zeros(4))
