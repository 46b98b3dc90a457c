"""The GC block inside a residual block: called as a module (hooks see every call), written
into the branch only where no gradient needs it, and recorded with its true input."""

import itertools
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from gcnet.analysis import ContextAttentionRecorder
from gcnet.layers import create_context
from gcnet.modeling import GCBottleneckBlock, build_gcnet_resnet, fold_batch_norms

from ..helpers import randomize_, randomize_norms_

POOLINGS = ("att", "avg")
FUSIONS = (("channel_add",), ("channel_mul",), ("channel_mul", "channel_add"))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_frozen_branch_with_a_training_gc_block(fusion):
    """Convs frozen and an input without gradient, GC block training: its pooling's backward
    needs the branch as it was, so the fusion must not write into it (it did, chosen from the
    branch's requires_grad alone, and the backward failed: "modified by an inplace operation")."""
    torch.manual_seed(0)
    gc = partial(create_context, "gc", ratio=1 / 4, fusion_types=fusion)
    block = GCBottleneckBlock(64, 64, bottleneck_channels=16, norm="FrozenBN", context=gc).train()
    randomize_(block.context_block, scale=0.1)
    for name, p in block.named_parameters():
        p.requires_grad_(name.startswith("context_block."))
    x = torch.randn(2, 64, 8, 8)
    upstream = torch.linspace(-1, 1, x.numel()).reshape(x.shape)
    block(x).backward(upstream)
    grads = [p.grad.clone() for p in block.context_block.parameters()]

    block.zero_grad(set_to_none=True)
    with torch.no_grad():
        branch = block.conv3(F.relu(block.conv2(F.relu(block.conv1(x)))))
    expected = F.relu(x + block.context_block(branch))  # the block as a module, on a branch of its own
    expected.backward(upstream)
    for a, p in zip(grads, block.context_block.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("position", ["after1x1", "afterAdd"])
@pytest.mark.parametrize("pooling,fusion", list(itertools.product(POOLINGS, FUSIONS)))
def test_recorded_maps_are_those_of_the_true_input(pooling, fusion, position, mode):
    """The attention maps the demo draws (forward hooks on the GC block) equal the maps of an
    untouched copy of the block's input, for every pooling and fusion; watched or not, the
    model computes the same."""
    torch.manual_seed(0)
    gc = dict(ratio=1 / 4, pooling_type=pooling, fusion_types=fusion)
    options = dict(context="gc", context_stages=["res4"], gc=gc, context_position=position)
    model = build_gcnet_resnet(50, norm="FrozenBN", out_features=["res4"], **options)
    randomize_(model.res4, scale=0.05).train(mode == "train")
    block = model.res4[1]
    inputs = []
    handle = block.register_forward_pre_hook(lambda m, i: inputs.append(i[0].detach().clone()))
    x = torch.randn(1, 3, 64, 64)
    with ContextAttentionRecorder(model, ["res4.1.context_block"]) as recorder, torch.set_grad_enabled(mode == "train"):
        watched = model(x)["res4"]
    handle.remove()
    with torch.no_grad():
        branch = block.conv3(F.relu(block.conv2(F.relu(block.conv1(inputs[0])))))
        gc_input = branch if position == "after1x1" else F.relu(branch + inputs[0])
        torch.testing.assert_close(recorder.maps["res4.1.context_block"], block.context_block.attention_map(gc_input))
    with torch.set_grad_enabled(mode == "train"):
        torch.testing.assert_close(model(x)["res4"], watched, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position", ["after1x1", "afterAdd"])
def test_a_watched_block_runs_in_place_as_a_module(position):
    """Forward hooks on the GC block of a residual block fire, and do not turn its in-place
    fusion off: at inference its output is the branch tensor it was given, which a pre-hook
    sees before it is written."""
    torch.manual_seed(0)
    gc = partial(create_context, "gc", ratio=1 / 4, fusion_types=("channel_mul", "channel_add"))
    block = GCBottleneckBlock(64, 64, bottleneck_channels=16, norm="BN", context=gc, context_position=position)
    randomize_(block).eval()
    calls = []
    gc_block = block.context_block
    hooks = [
        gc_block.register_forward_pre_hook(lambda m, args: calls.append(("pre", args[0].clone(), args[0].data_ptr()))),
        gc_block.register_forward_hook(lambda m, args, out: calls.append(("post", out.clone(), out.data_ptr()))),
    ]
    x = torch.randn(2, 64, 6, 5)
    with torch.no_grad():
        block(x)
        for hook in hooks:
            hook.remove()
        branch = block.conv3(F.relu(block.conv2(F.relu(block.conv1(x)))))
        gc_input = branch if position == "after1x1" else F.relu(branch + x)
        expected = block.context_block(gc_input)
    (pre, seen_input, input_ptr), (post, output, output_ptr) = calls
    assert (pre, post) == ("pre", "post") and output_ptr == input_ptr
    torch.testing.assert_close(seen_input, gc_input)
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("pooling,fusion", list(itertools.product(POOLINGS, FUSIONS)))
def test_a_folded_block_computes_its_gc_block_from_the_last_convs_input(pooling, fusion, batch):
    """With the BatchNorm after the last 1x1 conv folded into it, inference computes the
    "after1x1" GC block from that conv's input (Eq. 4 through the conv's weights; one image:
    the fusion folded into the conv too) and equals the block run as a module on the branch."""
    torch.manual_seed(0)
    gc = partial(create_context, "gc", ratio=1 / 4, pooling_type=pooling, fusion_types=fusion)
    block = GCBottleneckBlock(64, 64, bottleneck_channels=16, norm="FrozenBN", context=gc)
    randomize_norms_(randomize_(block, scale=0.2)).eval()
    fold_batch_norms(block)
    x = torch.randn(batch, 64, 7, 9)
    with torch.no_grad():
        fused = block.context_before_conv3(F.relu(block.conv2(F.relu(block.conv1(x)))))
        found = block(x)
        block.context_block.fuse_into_producer = False
        expected = block(x)
    assert fused is not None and block.conv3.norm is None
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)
    with torch.enable_grad():  # training and recorded gradients take the module
        assert block.context_before_conv3(torch.randn(batch, 16, 7, 9)) is None
