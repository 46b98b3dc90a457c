"""The context modules by name: one factory for every context slot, its options and errors."""

import inspect
from functools import partial

import pytest
import torch

from gcnet.layers import (
    CONTEXT_TYPES,
    ContextBlock,
    NonLocalBlock,
    SimplifiedNonLocalBlock,
    context_options,
    context_spec,
    create_context,
)


def test_types_and_their_modules():
    assert CONTEXT_TYPES == ("none", "gc", "nl", "snl")
    assert create_context(None, 64) is None and create_context("none", 64) is None
    gc, nl, snl = (create_context(kind, 64) for kind in ("gc", "nl", "snl"))
    assert type(gc) is ContextBlock and type(nl) is NonLocalBlock and type(snl) is SimplifiedNonLocalBlock
    # The paper's GC block (Eq. 5, r16) and the reference implementation's NL block.
    assert (gc.planes, gc.pooling_type, gc.fusion_types, gc.transform) == (
        4,
        "att",
        ("channel_add",),
        "bottleneck_ln_relu",
    )
    assert (nl.mode, nl.inter_channels, nl.use_scale) == ("embedded_gaussian", 32, True)


def test_options_are_the_signature_defaults():
    for kind, module in (("gc", ContextBlock), ("nl", NonLocalBlock)):
        parameters = list(inspect.signature(module).parameters.values())[1:]
        expected = {p.name: p.default for p in parameters if p.default is not None}
        assert context_options(kind) == expected
    assert context_options("snl") == {} and context_options("none") == {}
    assert context_options("gc", ratio=0.25)["ratio"] == 0.25


def test_options_reach_the_module():
    block = create_context("gc", 32, ratio=1 / 4, pooling_type="avg", fusion_types=("channel_mul",))
    assert (block.planes, block.conv_mask, block.channel_add_conv) == (8, None, None)
    assert create_context("nl", 32, mode="gaussian", reduction=4).inter_channels == 8


def test_a_callable_spec_builds_the_module():
    spec = partial(create_context, "gc", ratio=1 / 2)
    assert create_context(spec, 8).planes == 4
    assert isinstance(create_context(SimplifiedNonLocalBlock, 8), SimplifiedNonLocalBlock)
    x = torch.randn(1, 8, 3, 3)
    assert torch.equal(create_context(spec, 8)(x), x)  # a new block is the identity


def test_a_slot_takes_the_options_of_its_kind():
    """Configs give each kind its options by name; the slot's kind picks its own."""
    options = dict(gc={"ratio": 1 / 2}, nl={"mode": "gaussian"})
    assert create_context(context_spec("gc", **options), 8).planes == 4
    assert create_context(context_spec("nl", **options), 8).mode == "gaussian"
    assert type(create_context(context_spec("snl", **options), 8)) is SimplifiedNonLocalBlock
    assert context_spec(None, **options) is None and context_spec("gc") == "gc"
    assert context_spec(SimplifiedNonLocalBlock, **options) is SimplifiedNonLocalBlock


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: create_context("se", 8), "context must be one of ('none', 'gc', 'nl', 'snl'), got 'se'"),
        (
            lambda: create_context("se", 8, key="extra_context"),
            "extra_context must be one of ('none', 'gc', 'nl', 'snl'), got 'se'",
        ),
        (
            lambda: create_context(context_spec("gc", gc={"mode": "gaussian"}), 8),
            "gc has unknown keys ['mode']; allowed: ['fusion_types', 'pooling_type', 'ratio', 'transform']",
        ),
        (
            lambda: create_context("gc", 8, reduction=2),
            "gc has unknown keys ['reduction']; allowed: ['fusion_types', 'pooling_type', 'ratio', 'transform']",
        ),
        (
            lambda: context_options("nl", ratio=4),
            "nl has unknown keys ['ratio']; allowed: ['mode', 'reduction', 'use_scale']",
        ),
        (lambda: context_options("snl", ratio=4), "snl has unknown keys ['ratio']; allowed: []"),
    ],
)
def test_errors_name_the_type_and_the_allowed_values(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message
