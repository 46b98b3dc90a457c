"""Deformable convolution on torchvision: values, CPU backward, and the DCN bottleneck."""

import pytest
import torch
import torch.nn.functional as F

from gcnet.modeling import DeformConv2d, build_gcnet_resnet
from gcnet.modeling.backbone import GCBottleneckBlock


def test_zero_offsets_equal_regular_conv():
    conv = DeformConv2d(8, 16, kernel_size=3, padding=1, groups=2, bias=False)
    x = torch.randn(2, 8, 9, 7)
    offset = torch.zeros(2, 2 * 9, 9, 7)
    expected = F.conv2d(x, conv.weight, padding=1, groups=2)
    torch.testing.assert_close(conv(x, offset), expected, rtol=1e-5, atol=1e-5)
    mask = torch.full((2, 9, 9, 7), 0.5)
    torch.testing.assert_close(conv(x, offset, mask), 0.5 * expected, rtol=1e-5, atol=1e-5)


def test_integer_offsets_shift_the_sampling_grid():
    """dx = +1 at every kernel position samples x one column to the right."""
    conv = DeformConv2d(4, 4, kernel_size=3, padding=1, bias=False)
    x = torch.randn(1, 4, 8, 8)
    offset = torch.zeros(1, 18, 8, 8)
    offset[:, 1::2] = 1.0  # (dy, dx) pairs
    shifted = torch.zeros_like(x)
    shifted[..., :-1] = x[..., 1:]
    expected = F.conv2d(shifted, conv.weight, padding=1)
    torch.testing.assert_close(conv(x, offset)[..., 1:-2], expected[..., 1:-2], rtol=1e-5, atol=1e-5)


def test_backward_on_cpu_matches_finite_differences():
    conv = DeformConv2d(2, 3, kernel_size=3, padding=1).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    offset = (torch.rand(1, 18, 4, 5, dtype=torch.float64) - 0.5).requires_grad_()
    mask = torch.rand(1, 9, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, o, m: conv(a, o, m), (x, offset, mask))


@pytest.mark.parametrize("modulated", [False, True])
def test_new_dcn_block_equals_regular_block_up_to_the_mask(modulated):
    """Zero-initialised offsets: DCNv1 starts as the regular 3x3 conv; DCNv2's mask starts at
    sigmoid(0) = 1/2."""
    torch.manual_seed(0)
    kwargs = dict(bottleneck_channels=16, num_groups=4, norm="BN", stride=2)
    dcn = GCBottleneckBlock(64, 128, deform=True, deform_modulated=modulated, **kwargs).eval()
    plain = GCBottleneckBlock(64, 128, **kwargs).eval()
    state = {k: v for k, v in dcn.state_dict().items() if not k.startswith("conv2_offset.")}
    plain.load_state_dict(state)
    assert dcn.conv2_offset.weight.shape == ((27 if modulated else 18), 16, 3, 3)
    assert torch.count_nonzero(dcn.conv2_offset.weight) == 0
    x = torch.randn(2, 64, 8, 8)
    hidden = F.relu(plain.conv1(x))
    regular = F.conv2d(hidden, dcn.conv2.weight, stride=2, padding=1, groups=4)
    expected = dcn.conv2.norm(regular * (0.5 if modulated else 1.0))
    torch.testing.assert_close(dcn._conv2(hidden), expected, rtol=1e-5, atol=1e-5)
    if not modulated:
        torch.testing.assert_close(dcn(x), plain(x), rtol=1e-5, atol=1e-5)


def test_dcn_backbone_trains_offsets_on_cpu():
    torch.manual_seed(0)
    model = build_gcnet_resnet(
        50,
        norm="BN",
        deform_stages=["res3", "res4", "res5"],
        deform_modulated=True,
        deform_num_groups=2,
        context="gc",
        out_features=["res5"],
    )
    assert model.res3[0].conv2_offset.out_channels == 27 * 2
    assert model.res2[0].conv2_offset is None
    loss = model(torch.randn(2, 3, 64, 64))["res5"].square().mean()
    loss.backward()
    for stage in ("res3", "res4", "res5"):
        block = getattr(model, stage)[0]
        assert block.conv2_offset.weight.grad.abs().sum() > 0, stage
        assert block.conv2.weight.grad.abs().sum() > 0, stage
