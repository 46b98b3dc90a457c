"""GC-ResNet/ResNeXt backbones: block layout, GC placement, widths, strides, freezing, errors."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
import torchvision

from detectron2.layers import FrozenBatchNorm2d

from gcnet.layers import ContextBlock, NonLocalBlock, SimplifiedNonLocalBlock, create_context
from gcnet.modeling import (
    GCBasicBlock,
    GCBottleneckBlock,
    SyncBatchNorm,
    build_gcnet_resnet,
    make_gcnet_resnet_stages,
)

from ..helpers import num_parameters, randomize_

C3_C5 = ["res3", "res4", "res5"]
GC_R4 = partial(create_context, "gc", ratio=1 / 4)


def test_resnet50_classifier_matches_table8():
    """Table 8: ResNet-50 has 25.56M parameters, 28.08M with GC r16 in c3-c5."""
    baseline = build_gcnet_resnet(50, norm="BN", num_classes=1000, out_features=["linear"])
    gc = build_gcnet_resnet(50, norm="BN", num_classes=1000, out_features=["linear"], context="gc")
    assert num_parameters(baseline) == num_parameters(torchvision.models.resnet50())
    assert abs(num_parameters(baseline) / 25.56e6 - 1) < 0.003
    assert abs(num_parameters(gc) / 28.08e6 - 1) < 0.003
    assert gc(torch.randn(1, 3, 64, 64))["linear"].shape == (1, 1000)


@pytest.mark.parametrize(
    "depth,groups,width,reference",
    [
        (18, 1, 64, torchvision.models.resnet18),
        (34, 1, 64, torchvision.models.resnet34),
        (101, 1, 64, torchvision.models.resnet101),
        (50, 32, 4, torchvision.models.resnext50_32x4d),
        (101, 64, 4, torchvision.models.resnext101_64x4d),
    ],
)
def test_widths_match_torchvision(depth, groups, width, reference):
    model = build_gcnet_resnet(
        depth, norm="BN", num_groups=groups, width_per_group=width, num_classes=1000, out_features=["linear"]
    )
    assert num_parameters(model) == num_parameters(reference())


def test_resnext_32x4d_group_conv_shapes():
    model = build_gcnet_resnet(101, num_groups=32, width_per_group=4)
    for stage, width in zip(["res2", "res3", "res4", "res5"], [128, 256, 512, 1024]):
        conv2 = getattr(model, stage)[0].conv2
        assert conv2.groups == 32
        assert conv2.weight.shape == (width, width // 32, 3, 3)


def test_gc_blocks_in_chosen_stages_only():
    model = build_gcnet_resnet(50, context="gc", context_stages=["res3", "res5"], gc=dict(ratio=1 / 4))
    for stage, channels in zip(["res2", "res3", "res4", "res5"], [256, 512, 1024, 2048]):
        for block in getattr(model, stage):
            if stage in ("res3", "res5"):
                assert isinstance(block.context_block, ContextBlock)
                assert block.context_block.in_channels == channels
                assert block.context_block.planes == channels // 4
            else:
                assert block.context_block is None


def _bottleneck_branch(block: GCBottleneckBlock, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(block.conv1(x))
    out = F.relu(block.conv2(out))
    return block.conv3(out)


@pytest.mark.parametrize("position", ["after1x1", "afterAdd"])
def test_gc_position(position):
    """Table 5(b): after1x1 is z = relu(x + GC(F(x))); afterAdd is z = GC(relu(x + F(x)))."""
    block = GCBottleneckBlock(
        64, 64, bottleneck_channels=16, norm="BN", context=GC_R4, context_position=position
    ).eval()
    randomize_(block.context_block, seed=3)
    x = torch.randn(2, 64, 8, 8)
    branch = _bottleneck_branch(block, x)
    if position == "after1x1":
        expected = F.relu(x + block.context_block(branch))
    else:
        expected = block.context_block(F.relu(x + branch))
    torch.testing.assert_close(block(x), expected)


def test_basic_block_gc_after_last_conv():
    block = GCBasicBlock(32, 64, stride=2, norm="BN", context=GC_R4).eval()
    randomize_(block.context_block, seed=1)
    x = torch.randn(2, 32, 8, 8)
    branch = block.conv2(F.relu(block.conv1(x)))
    torch.testing.assert_close(block(x), F.relu(block.shortcut(x) + block.context_block(branch)))
    model = build_gcnet_resnet(18, context="gc")
    assert all(isinstance(b, GCBasicBlock) for b in model.res4)
    assert model.res5[0].context_block.in_channels == 512


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_in_1x1(stride_in_1x1):
    block = build_gcnet_resnet(50, stride_in_1x1=stride_in_1x1).res3[0]
    assert block.conv1.stride == ((2, 2) if stride_in_1x1 else (1, 1))
    assert block.conv2.stride == ((1, 1) if stride_in_1x1 else (2, 2))


@pytest.mark.parametrize("contract", [False, True])
def test_dilated_stages(contract):
    model = build_gcnet_resnet(50, dilations=(1, 1, 2, 4), contract_dilation=contract)
    outputs = model(torch.randn(1, 3, 64, 64))
    assert outputs["res4"].shape[-2:] == (8, 8) and outputs["res5"].shape[-2:] == (8, 8)
    assert model.output_shape()["res5"].stride == 8
    assert model.res4[0].conv2.dilation == ((1, 1) if contract else (2, 2))
    assert model.res4[1].conv2.dilation == (2, 2)
    assert model.res5[0].conv2.dilation == ((2, 2) if contract else (4, 4))
    assert model.res5[2].conv2.dilation == (4, 4)


def test_output_stride_16():
    model = build_gcnet_resnet(101, stem="deep", dilations=(1, 1, 1, 2), out_features=["res4", "res5"])
    assert model.output_shape()["res5"].stride == 16
    assert model(torch.randn(1, 3, 64, 64))["res5"].shape == (1, 2048, 4, 4)


def test_freeze_at_two_freezes_stem_and_res2():
    model = build_gcnet_resnet(50, norm="BN", freeze_at=2, context="gc", context_stages=["res2", "res3"])
    for name, p in model.named_parameters():
        frozen = name.startswith(("stem.", "res2."))
        assert p.requires_grad is not frozen, name
    assert isinstance(model.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res3[0].conv1.norm, torch.nn.BatchNorm2d)


@pytest.mark.parametrize(
    "norm,norm_type", [("GN", torch.nn.GroupNorm), ("BN", torch.nn.BatchNorm2d), ("FrozenBN", FrozenBatchNorm2d)]
)
def test_norms(norm, norm_type):
    model = build_gcnet_resnet(50, norm=norm, context="gc")
    assert isinstance(model.stem.conv1.norm, norm_type)
    assert isinstance(model.res5[2].conv3.norm, norm_type)
    assert model(torch.randn(2, 3, 64, 64))["res5"].shape == (2, 2048, 2, 2)


def test_syncbn_everywhere():
    model = build_gcnet_resnet(50, norm="SyncBN")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, SyncBatchNorm) for m in norms)


@pytest.mark.parametrize(
    "kind,module_type", [("nl", NonLocalBlock), ("snl", SimplifiedNonLocalBlock), ("gc", ContextBlock)]
)
def test_extra_block_before_last_block_of_c4(kind, module_type):
    """Table 5(a): the extra block runs between res4[-2] and res4[-1]."""
    model = build_gcnet_resnet(50, extra_context=kind)
    holders = [name for name, m in model.named_modules() if getattr(m, "extra_context", None) is not None]
    assert holders == ["res4.4"]
    assert isinstance(model.res4[4].extra_context, module_type)
    assert model.res4[4].extra_context.in_channels == 1024


@pytest.mark.parametrize("stage,mode", [("res3", "gaussian"), ("res4", "embedded_gaussian"), ("res5", "concat")])
def test_extra_nl_block_instantiation_and_stage(stage, mode):
    """Tables 1-2: the NL instantiation and the stage of the extra block are options."""
    model = build_gcnet_resnet(50, extra_context="nl", extra_context_stage=stage, nl=dict(mode=mode))
    holders = [name for name, m in model.named_modules() if getattr(m, "extra_context", None) is not None]
    assert holders == [f"{stage}.{len(getattr(model, stage)) - 2}"]
    block = getattr(model, stage)[-2].extra_context
    assert (block.mode, block.inter_channels, block.use_scale) == (mode, block.in_channels // 2, True)
    with pytest.raises(
        ValueError, match=r"nl has unknown keys \['ratio'\]; allowed: \['mode', 'reduction', 'use_scale'\]"
    ):
        build_gcnet_resnet(50, extra_context="nl", nl=dict(ratio=4))


def test_extra_block_output_feeds_last_block():
    model = build_gcnet_resnet(50, norm="BN", extra_context="snl", out_features=["res4"]).eval()
    randomize_(model.res4[4].extra_context, seed=2, scale=0.05)
    x = torch.randn(1, 3, 64, 64)
    features = model.stem(x)
    for stage in (model.res2, model.res3):
        features = stage(features)
    for block in model.res4[:4]:
        features = block(features)
    block4 = model.res4[4]
    before = F.relu(_bottleneck_branch(block4, features) + features)
    expected = model.res4[5](block4.extra_context(before))
    torch.testing.assert_close(model(x)["res4"], expected)


def test_new_gc_backbone_equals_plain_backbone():
    """Zero-initialised GC blocks leave a pretrained backbone's features unchanged."""
    torch.manual_seed(0)
    plain = build_gcnet_resnet(50, out_features=["res5"]).eval()
    gc = build_gcnet_resnet(50, out_features=["res5"], context="gc").eval()
    missing = gc.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".context_block." in k for k in missing)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(gc(x)["res5"], plain(x)["res5"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(depth=77), "depth must be one of [18, 34, 50, 101, 152], got 77"),
        (
            dict(context_stages=["res3", "c4"]),
            "context_stages has unknown stages ['c4']; allowed: ('res2', 'res3', 'res4', 'res5')",
        ),
        (dict(context_stages="res3"), "context_stages must be a list of stage names"),
        (dict(deform_stages=["res6"]), "deform_stages has unknown stages ['res6']"),
        (
            dict(context="gc", context_stages=["res3"], gc=dict(ratio=1 / 1024)),
            "res3 (512 channels): ContextBlock: in_channels * ratio must be >= 1",
        ),
        (dict(context="gc", gc=dict(ratio=1 / 16, reduction=4)), "gc has unknown keys ['reduction']"),
        (dict(context_position="before1x1"), "context_position must be one of ('after1x1', 'afterAdd')"),
        (dict(extra_context="se"), "extra_context must be one of ('none', 'gc', 'nl', 'snl'), got 'se'"),
        (dict(context="se"), "res3 (512 channels): context must be one of ('none', 'gc', 'nl', 'snl'), got 'se'"),
        (dict(extra_context_stage="c4"), "extra_context_stage must be one of ('res2', 'res3', 'res4', 'res5')"),
        (dict(depth=18, deform_stages=["res3"]), "deform_stages needs a bottleneck depth"),
        (dict(depth=34, num_groups=32, width_per_group=4), "need a bottleneck depth"),
        (dict(dilations=(1, 1, 2)), "dilations must be 4 positive ints"),
    ],
)
def test_bad_options_raise_value_error(kwargs, message):
    with pytest.raises(ValueError) as info:
        build_gcnet_resnet(**kwargs)
    assert message in str(info.value)


def test_the_stage_builder_takes_context_specs():
    """make_gcnet_resnet_stages's context slots take what create_context takes: a kind with its
    default options, or a callable with options bound."""
    stages = make_gcnet_resnet_stages(18, context="snl", context_stages=["res5"], extra_context=GC_R4)
    assert [type(b.context_block) for b in stages[3]] == [SimplifiedNonLocalBlock] * 2
    assert stages[2][0].extra_context.planes == 256 // 4 and stages[2][1].extra_context is None


@pytest.mark.parametrize(
    "kind,module_type", [("nl", NonLocalBlock), ("snl", SimplifiedNonLocalBlock), ("gc", ContextBlock)]
)
def test_every_kind_fills_the_residual_slot(kind, module_type):
    """The residual blocks' slot holds any kind of context module, with its options, and the
    block computes relu(x + context(F(x))) (after1x1) with it."""
    model = build_gcnet_resnet(50, norm="BN", context=kind, context_stages=["res4"], nl=dict(mode="gaussian"))
    assert all(isinstance(b.context_block, module_type) for b in model.res4)
    assert all(b.context_block is None for stage in (model.res2, model.res3, model.res5) for b in stage)
    block = randomize_(model.res4[1], seed=4, scale=0.05).eval()
    if kind == "nl":
        assert block.context_block.mode == "gaussian"
    x = torch.randn(1, 1024, 6, 5)
    with torch.no_grad():
        expected = F.relu(x + block.context_block(_bottleneck_branch(block, x)))
        torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(
    "old,new,messages",
    [
        (
            dict(gc_stages=["res4"]),
            dict(context="gc", context_stages=["res4"]),
            ["build_gcnet_resnet(gc_stages=...) is deprecated; use context_stages, context='gc'"],
        ),
        (
            dict(context="gc", gc_position="afterAdd"),
            dict(context="gc", context_position="afterAdd"),
            ["build_gcnet_resnet(gc_position=...) is deprecated; use context_position"],
        ),
        (
            dict(extra_block="nl", extra_block_stage="res3"),
            dict(extra_context="nl", extra_context_stage="res3"),
            [
                "build_gcnet_resnet(extra_block=...) is deprecated; use extra_context",
                "build_gcnet_resnet(extra_block_stage=...) is deprecated; use extra_context_stage",
            ],
        ),
    ],
)
def test_renamed_options_still_work_and_say_their_new_name(old, new, messages, monkeypatch):
    from gcnet.modeling import defaults

    monkeypatch.setattr(defaults, "_announced", set())
    with pytest.warns(FutureWarning) as warned:
        model = build_gcnet_resnet(18, **old)
        build_gcnet_resnet(18, **old)  # said once
    expected = build_gcnet_resnet(18, **new)
    assert [(n, type(m)) for n, m in model.named_modules()] == [(n, type(m)) for n, m in expected.named_modules()]
    assert [b.context_position for b in model.res3] == [b.context_position for b in expected.res3]
    assert [str(w.message) for w in warned if w.category is FutureWarning] == messages


def test_bad_out_features():
    with pytest.raises(ValueError, match=r"out_features has unknown names \['p5'\]"):
        build_gcnet_resnet(50, out_features=["res4", "p5"])


@pytest.mark.parametrize("position", ["after1x1", "afterAdd"])
def test_inference_fuses_the_gc_add_into_the_block(position):
    """Without autograd the GC block adds into the block's own tensor (no new tensor); the
    result equals the training-time computation."""
    torch.manual_seed(0)
    options = dict(context="gc", context_stages=["res4"], context_position=position)
    model = build_gcnet_resnet(50, norm="BN", out_features=["res4"], **options).eval()
    randomize_(model.res4, scale=0.05)
    block = model.res4[1]
    branch, same_tensor = [], []
    handles = [
        block.conv3.register_forward_hook(lambda m, i, o: branch.append(o.data_ptr())),
        block.register_forward_hook(lambda m, i, o: same_tensor.append(o.data_ptr() == branch[-1])),
    ]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused = model(x)["res4"]
    tracked = model(x)["res4"]
    for handle in handles:
        handle.remove()
    assert same_tensor == [True, False]
    torch.testing.assert_close(fused, tracked.detach(), rtol=1e-6, atol=1e-6)


def _saved_bytes(fn):
    """Bytes of the tensors autograd saves for backward while ``fn`` runs (each storage once),
    and fn's result."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return sum(storages.values()), result


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_training_pools_from_the_last_conv_input(norm, monkeypatch):
    """With a frozen BN after the last 1x1 conv, the GC block's pooling backward reads that
    conv's input (kept by the conv anyway) instead of keeping the block's (N, C, H, W) branch
    alive: the block saves no more than without the GC block, and its gradients equal those
    of the path that saves x. With a training BN it keeps x (the statistics come from the batch)."""
    from gcnet.modeling.backbone import blocks

    kwargs = dict(bottleneck_channels=16, norm=norm)
    gc_block = randomize_(GCBottleneckBlock(64, 64, context=GC_R4, **kwargs), scale=0.05).train()
    plain = GCBottleneckBlock(64, 64, **kwargs).train()
    plain.load_state_dict(gc_block.state_dict(), strict=False)
    x = torch.randn(2, 64, 32, 24)
    branch_bytes = x.numel() * x.element_size()

    def run(block):
        leaf = x.clone().requires_grad_()
        saved, out = _saved_bytes(lambda: block(leaf))
        block.zero_grad(set_to_none=True)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        return saved, [leaf.grad] + [p.grad for p in block.parameters()]

    plain_saved, _ = run(plain)
    gc_saved, gc_grads = run(gc_block)
    monkeypatch.setattr(blocks, "frozen_conv_source", lambda conv, conv_input: None)
    keeping_saved, keeping_grads = run(gc_block)
    assert keeping_saved - plain_saved >= branch_bytes
    if norm == "FrozenBN":
        assert gc_saved - plain_saved < branch_bytes / 10
    else:
        assert gc_saved == keeping_saved
    for a, b in zip(gc_grads, keeping_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
