"""GC-ResNet and GC-ResNeXt backbones (Section 4.3 of the paper).

:func:`make_gcnet_resnet_stages` builds the four residual stages res2-res5 with GC blocks in
any subset of them, DCN per stage, dilation, and ResNeXt widths (``num_groups`` x
``width_per_group``, which detectron2's ``ResNet.make_default_stages`` cannot express).
:func:`build_gcnet_resnet` puts a stem in front and returns detectron2's ``ResNet``; it is
LazyConfig-callable and, through ``@configurable``, also builds from a yacs config.
"""

from typing import Dict, List, Mapping, Optional, Sequence

from detectron2.config import CfgNode, configurable
from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, BasicStem, ResNet

from gcnet.layers import ContextSpec, context_spec

from ..defaults import deprecated_keywords, option_defaults, options_from_yacs
from ..norm import resolve_norm
from .blocks import GCBasicBlock, GCBottleneckBlock
from .stem import DeepStem

__all__ = [
    "STAGE_NAMES",
    "STEM_TYPES",
    "NUM_BLOCKS_PER_STAGE",
    "GC_STAGES",
    "YACS_KEYS",
    "RENAMED_YACS_KEYS",
    "RENAMED_OPTIONS",
    "make_gcnet_resnet_stages",
    "gcnet_resnet_defaults",
    "build_gcnet_resnet",
    "build_gcnet_resnet_backbone",
]

STAGE_NAMES = ("res2", "res3", "res4", "res5")
STEM_TYPES = ("basic", "deep")
NUM_BLOCKS_PER_STAGE: Dict[int, Sequence[int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
# The stages of the paper's GC-ResNet (Section 4.3): a GC block in every residual block of c3-c5.
GC_STAGES = ("res3", "res4", "res5")
# The keywords of build_gcnet_resnet before its context slot took any kind of module, still
# taken (deprecated): old name -> new name. gc_stages also implies context="gc", the one kind then.
RENAMED_OPTIONS = {
    "gc_stages": "context_stages",
    "gc_position": "context_position",
    "extra_block": "extra_context",
    "extra_block_stage": "extra_context_stage",
}


def _check_stage_names(option: str, stages: Sequence[str]) -> List[str]:
    if isinstance(stages, str):
        raise ValueError(f"{option} must be a list of stage names from {STAGE_NAMES}, got {stages!r}")
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"{option} has unknown stages {unknown}; allowed: {STAGE_NAMES}")
    return list(stages)


def _check_stages(context_stages, deform_stages, extra_context_stage: str):
    """The stage lists of the context and DCN, checked, and the extra context's stage."""
    if extra_context_stage not in STAGE_NAMES:
        raise ValueError(f"extra_context_stage must be one of {STAGE_NAMES}, got {extra_context_stage!r}")
    return _check_stage_names("context_stages", context_stages), _check_stage_names("deform_stages", deform_stages)


def _check_depth(depth: int, deform_stages, num_groups: int, width_per_group: int, dilations) -> None:
    if depth not in NUM_BLOCKS_PER_STAGE:
        raise ValueError(f"depth must be one of {sorted(NUM_BLOCKS_PER_STAGE)}, got {depth!r}")
    if len(dilations) != 4 or any(not isinstance(d, int) or d < 1 for d in dilations):
        raise ValueError(f"dilations must be 4 positive ints (res2-res5), got {list(dilations)}")
    if depth >= 50:
        return
    if deform_stages:
        raise ValueError(f"deform_stages needs a bottleneck depth (50, 101, 152), got depth={depth}")
    if num_groups != 1 or width_per_group != 64:
        raise ValueError(
            f"num_groups/width_per_group (ResNeXt) need a bottleneck depth (50, 101, 152), got depth={depth}"
        )
    if any(d != 1 for d in dilations):
        raise ValueError(f"dilations need a bottleneck depth (50, 101, 152), got depth={depth}")


def make_gcnet_resnet_stages(
    depth: int = 50,
    *,
    num_groups: int = 1,
    width_per_group: int = 64,
    stem_out_channels: int = 64,
    norm="FrozenBN",
    stride_in_1x1: bool = False,
    dilations: Sequence[int] = (1, 1, 1, 1),
    contract_dilation: bool = False,
    context: ContextSpec = None,
    context_stages: Sequence[str] = GC_STAGES,
    context_position: str = "after1x1",
    extra_context: ContextSpec = None,
    extra_context_stage: str = "res4",
    deform_stages: Sequence[str] = (),
    deform_modulated: bool = False,
    deform_num_groups: int = 1,
) -> List[List[CNNBlockBase]]:
    """The residual stages res2-res5 of a (GC-)ResNet or ResNeXt, for detectron2's ``ResNet``.

    Args:
        depth: 18 or 34 (basic blocks), 50, 101 or 152 (bottlenecks).
        num_groups, width_per_group: ResNeXt cardinality and width of res2's 3x3 conv (32 and
            4 for X-101-32x4d; 1 and 64 for ResNet); the width doubles per stage.
        stem_out_channels: channels entering res2.
        norm: "FrozenBN", "BN", "GN", "SyncBN" (:func:`gcnet.modeling.resolve_norm`), ...
        stride_in_1x1: the stride in a bottleneck's first 1x1 conv (caffe-style MSRA weights),
            not its 3x3 conv (pytorch-style torchvision/mmdetection weights).
        dilations: dilation of each stage res2-res5; a dilated stage keeps stride 1.
        contract_dilation: the first block of a dilated stage uses half the dilation
            (as mmsegmentation does).
        context: the context module of every residual block of ``context_stages``: a spec of
            :func:`gcnet.layers.create_context` ("gc", "nl", "snl", None, or a callable
            channels -> module such as ``functools.partial(create_context, "gc", ratio=1 / 4)``).
        context_stages: where ``context`` goes (the paper's GC-ResNet: :data:`GC_STAGES`).
        context_position: "after1x1" (default) or "afterAdd", Table 5(b).
        extra_context, extra_context_stage: a spec of one more context module, right before the
            last residual block of ``extra_context_stage`` (Table 5(a): an NL, SNL or GC block
            before the last block of c4).
        deform_stages, deform_modulated, deform_num_groups: DCN: stages, DCNv2, groups.

    The stages are checked here, a context module and its options where a block creates it: a
    bad value raises a ValueError naming the option (after the stage) and the allowed values.
    """
    context_stages, deform_stages = _check_stages(context_stages, deform_stages, extra_context_stage)
    _check_depth(depth, deform_stages, num_groups, width_per_group, dilations)
    bottleneck = dict(num_groups=num_groups, stride_in_1x1=stride_in_1x1, deform_modulated=deform_modulated)
    bottleneck.update(deform_num_groups=deform_num_groups)
    widths = dict(in_channels=stem_out_channels, out_channels=256 if depth >= 50 else 64)
    widths.update(bottleneck_channels=num_groups * width_per_group)
    stages = []
    for idx, (name, num_blocks) in enumerate(zip(STAGE_NAMES, NUM_BLOCKS_PER_STAGE[depth])):
        stage_kwargs = dict(norm=norm, context=context if name in context_stages else None)
        stage_kwargs.update(context_position=context_position)
        extra = extra_context if name == extra_context_stage else None
        stage_kwargs.update(_per_block_kwargs(num_blocks, idx, dilations[idx], contract_dilation, extra))
        bottleneck_kwargs = dict(bottleneck, deform=name in deform_stages) if depth >= 50 else None
        stages.append(_make_stage(name, num_blocks, widths, stage_kwargs, bottleneck_kwargs))
    return stages


def _per_block_kwargs(num_blocks: int, idx: int, dilation: int, contract_dilation: bool, extra) -> dict:
    """The options of a stage that differ by block: its first block strides (unless the stage
    is the first or dilated) and may use half the dilation, its next-to-last block holds the
    extra context module."""
    first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
    return dict(
        stride_per_block=[1 if idx == 0 or dilation > 1 else 2] + [1] * (num_blocks - 1),
        dilation_per_block=[first_dilation] + [dilation] * (num_blocks - 1),
        extra_context_per_block=[extra if i == num_blocks - 2 else None for i in range(num_blocks)],
    )


def _make_stage(name: str, num_blocks: int, widths: Dict[str, int], stage_kwargs: dict, bottleneck: Optional[dict]):
    """detectron2's ``ResNet.make_stage`` of bottleneck blocks (with the ``bottleneck``
    options) or of basic blocks (None), errors prefixed by the stage; ``widths`` moves on to
    the next stage's (the channels double)."""
    in_channels, out_channels = widths["in_channels"], widths["out_channels"]
    if bottleneck is None:
        block_class = GCBasicBlock
        stage_kwargs = {k: v for k, v in stage_kwargs.items() if k != "dilation_per_block"}  # 1, as checked
    else:
        block_class = GCBottleneckBlock
        stage_kwargs = dict(stage_kwargs, bottleneck_channels=widths["bottleneck_channels"], **bottleneck)
    try:
        blocks = ResNet.make_stage(
            block_class, num_blocks, in_channels=in_channels, out_channels=out_channels, **stage_kwargs
        )
    except ValueError as e:
        raise ValueError(f"{name} ({out_channels} channels): {e}") from e
    widths.update(in_channels=out_channels, out_channels=2 * out_channels)
    widths.update(bottleneck_channels=2 * widths["bottleneck_channels"])
    return blocks


# MODEL.GCNET.<KEY> -> the option of build_gcnet_resnet it sets (the key is the option's path,
# upper case). The other options come from detectron2's MODEL.RESNETS.* keys (depth, ResNeXt
# widths, norm, DCN, stride_in_1x1).
YACS_KEYS = {
    "CONTEXT": "context",
    "CONTEXT_STAGES": "context_stages",
    "CONTEXT_POSITION": "context_position",
    "GC_RATIO": "gc.ratio",
    "GC_POOLING_TYPE": "gc.pooling_type",
    "GC_FUSION_TYPES": "gc.fusion_types",
    "GC_TRANSFORM": "gc.transform",
    "EXTRA_CONTEXT": "extra_context",
    "EXTRA_CONTEXT_STAGE": "extra_context_stage",
    "NL_MODE": "nl.mode",
    "STEM": "stem",
    "STEM_CHANNELS": "stem_channels",
    "DILATIONS": "dilations",
    "CONTRACT_DILATION": "contract_dilation",
}
# The MODEL.GCNET.* keys before the context slot took any kind of module, still read where set
# (deprecated; None when not set): old key -> new key.
RENAMED_YACS_KEYS = {
    "STAGES": "CONTEXT_STAGES",
    "RATIO": "GC_RATIO",
    "POOLING_TYPE": "GC_POOLING_TYPE",
    "FUSION_TYPES": "GC_FUSION_TYPES",
    "TRANSFORM": "GC_TRANSFORM",
    "POSITION": "CONTEXT_POSITION",
    "EXTRA_BLOCK": "EXTRA_CONTEXT",
    "EXTRA_BLOCK_STAGE": "EXTRA_CONTEXT_STAGE",
}


def _gcnet_resnet_from_config(cfg: CfgNode, input_shape: ShapeSpec):
    """Keyword arguments of :func:`build_gcnet_resnet` from detectron2's MODEL.RESNETS.* keys
    and the MODEL.GCNET.* keys of :func:`gcnet.modeling.add_gcnet_config`."""
    resnets = cfg.MODEL.RESNETS
    options = options_from_yacs(cfg.MODEL.GCNET, YACS_KEYS, RENAMED_YACS_KEYS, "MODEL.GCNET")
    options.update(context=options["context"] or None, extra_context=options["extra_context"] or None)
    options["dilations"] = options["dilations"] or (1, 1, 1, resnets.RES5_DILATION)
    if options["stem"] == "basic":
        options["stem_channels"] = [resnets.STEM_OUT_CHANNELS]
    return dict(
        options,
        depth=resnets.DEPTH,
        in_channels=input_shape.channels,
        norm=resnets.NORM,
        out_features=resnets.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        num_groups=resnets.NUM_GROUPS,
        width_per_group=resnets.WIDTH_PER_GROUP,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
        deform_stages=[s for s, on in zip(STAGE_NAMES, resnets.DEFORM_ON_PER_STAGE) if on],
        deform_modulated=resnets.DEFORM_MODULATED,
        deform_num_groups=resnets.DEFORM_NUM_GROUPS,
    )


def _check_outputs(out_features: Optional[Sequence[str]], num_classes: Optional[int], freeze_at: int) -> List[str]:
    """The output names, checked (by default the classifier's or res5), after checking freeze_at."""
    out_features = list(out_features) if out_features else ["linear" if num_classes else "res5"]
    allowed = ("stem",) + STAGE_NAMES + (("linear",) if num_classes else ())
    unknown = [f for f in out_features if f not in allowed]
    if unknown:
        raise ValueError(f"out_features has unknown names {unknown}; allowed: {allowed}")
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be an int in [0, 5], got {freeze_at!r}")
    return out_features


def _make_stem(stem: str, in_channels: int, stem_channels: Optional[Sequence[int]], norm) -> CNNBlockBase:
    """detectron2's ``BasicStem`` ("basic") or the three-conv :class:`DeepStem` ("deep")."""
    if stem == "basic":
        stem_channels = stem_channels or [64]
        if len(stem_channels) != 1:
            raise ValueError(f"stem_channels must be 1 int for the basic stem, got {list(stem_channels)}")
        return BasicStem(in_channels, stem_channels[0], norm=resolve_norm(norm))
    if stem == "deep":
        return DeepStem(in_channels, stem_channels or (32, 32, 64), norm=norm)
    raise ValueError(f"stem must be one of {STEM_TYPES}, got {stem!r}")


@configurable(from_config=_gcnet_resnet_from_config)
@deprecated_keywords(RENAMED_OPTIONS, implied={"gc_stages": {"context": "gc"}})
def build_gcnet_resnet(
    depth: int = 50,
    *,
    in_channels: int = 3,
    stem: str = "basic",
    stem_channels: Optional[Sequence[int]] = None,
    norm="FrozenBN",
    out_features: Optional[Sequence[str]] = ("res2", "res3", "res4", "res5"),
    freeze_at: int = 0,
    num_classes: Optional[int] = None,
    context: ContextSpec = None,
    extra_context: ContextSpec = None,
    gc: Optional[Mapping] = None,
    nl: Optional[Mapping] = None,
    **stage_kwargs,
) -> ResNet:
    """A (GC-)ResNet/ResNeXt: a stem and :func:`make_gcnet_resnet_stages` (which receives
    ``stage_kwargs``) in detectron2's ``ResNet``.

    Args:
        stem: "basic" (one 7x7 conv with ``stem_channels=[C]``, default [64]) or "deep"
            (three 3x3 convs, ``stem_channels=[C1, C2, C3]``: (64, 64, 128) for the paper's
            Cityscapes ResNet-101, (32, 32, 64), the default, for mmsegmentation's ResNetV1c).
        out_features: any of "stem", "res2".."res5", and "linear" with ``num_classes``.
        freeze_at: freeze the stem (1) and the first ``freeze_at - 1`` stages; the paper
            freezes c1-c2 (2) for COCO.
        num_classes: add global pooling and a linear classifier (the ImageNet model of
            Table 8).
        context, extra_context: the kind of context module in every residual block of
            ``context_stages`` ("gc": a GC-ResNet) and of the extra one: "gc", "nl", "snl" or None.
        gc, nl: ``ContextBlock`` and ``NonLocalBlock`` options over their defaults (e.g.
            ``dict(ratio=1/4)``, ``dict(mode="gaussian")``), for the slots of their kind.

    The other options are :func:`make_gcnet_resnet_stages`'s. The names of
    :data:`RENAMED_OPTIONS` still work, with a warning that names their new names.
    """
    out_features = _check_outputs(out_features, num_classes, freeze_at)
    stem_module = _make_stem(stem, in_channels, stem_channels, norm)
    stages = make_gcnet_resnet_stages(
        depth,
        stem_out_channels=stem_module.out_channels,
        norm=norm,
        context=context_spec(context, gc=gc, nl=nl),
        extra_context=context_spec(extra_context, gc=gc, nl=nl),
        **stage_kwargs,
    )
    return ResNet(
        stem_module,
        stages,
        num_classes=num_classes,
        # detectron2's ResNet drops every stage when out_features is ["linear"].
        out_features=None if out_features == ["linear"] else out_features,
        freeze_at=freeze_at,
    )


def gcnet_resnet_defaults() -> dict:
    """Every option of :func:`build_gcnet_resnet` with its default, the GC and NL block options
    spelt out (``gc`` and ``nl``, whichever slot holds them): what the LazyConfigs and the
    MODEL.GCNET.* yacs keys start from."""
    defaults = option_defaults(build_gcnet_resnet, make_gcnet_resnet_stages)
    del defaults["stem_out_channels"]  # the stem's width, which build_gcnet_resnet passes on
    return defaults


@BACKBONE_REGISTRY.register()
def build_gcnet_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """GC-ResNet from a yacs config (MODEL.RESNETS.* and MODEL.GCNET.*)."""
    return build_gcnet_resnet(cfg, input_shape)
