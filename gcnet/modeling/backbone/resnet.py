"""GC-ResNet and GC-ResNeXt backbones (Section 4.3 of the paper).

:func:`make_gcnet_resnet_stages` builds the four residual stages res2-res5 with GC blocks in
any subset of them, DCN per stage, dilation, and ResNeXt widths (``num_groups`` x
``width_per_group``, which detectron2's ``ResNet.make_default_stages`` cannot express).
:func:`build_gcnet_resnet` puts a stem in front and returns detectron2's ``ResNet``; it is
LazyConfig-callable and, through ``@configurable``, also builds from a yacs config.
"""
import functools
from typing import Dict, List, Mapping, Optional, Sequence

from detectron2.config import CfgNode, configurable
from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, BasicStem, ResNet

from gcnet.layers import check_context_type, context_options, create_context

from ..defaults import option_defaults, options_from_yacs
from ..norm import resolve_norm
from .blocks import CONTEXT_POSITIONS, GCBasicBlock, GCBottleneckBlock
from .stem import DeepStem

__all__ = [
    "STAGE_NAMES",
    "STEM_TYPES",
    "NUM_BLOCKS_PER_STAGE",
    "GC_STAGES",
    "YACS_KEYS",
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


def _check_stage_names(option: str, stages: Sequence[str]) -> List[str]:
    if isinstance(stages, str):
        raise ValueError(f"{option} must be a list of stage names from {STAGE_NAMES}, got {stages!r}")
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"{option} has unknown stages {unknown}; allowed: {STAGE_NAMES}")
    return list(stages)


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


def _context_specs(gc: Optional[Mapping], gc_position: str, extra_block: Optional[str], extra_block_stage: str, nl):
    """The context specs of a GC block and of the extra block, their options checked."""
    if extra_block_stage not in STAGE_NAMES:
        raise ValueError(f"extra_block_stage must be one of {STAGE_NAMES}, got {extra_block_stage!r}")
    if gc_position not in CONTEXT_POSITIONS:
        raise ValueError(f"gc_position must be one of {CONTEXT_POSITIONS}, got {gc_position!r}")
    options = {"gc": context_options("gc", **(gc or {})), "nl": context_options("nl", **(nl or {}))}
    extra_block = check_context_type(extra_block, "extra_block")
    extra = functools.partial(create_context, extra_block, **options.get(extra_block, {})) if extra_block else None
    return functools.partial(create_context, "gc", **options["gc"]), extra


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
    gc_stages: Sequence[str] = (),
    gc: Optional[Mapping] = None,
    gc_position: str = "after1x1",
    deform_stages: Sequence[str] = (),
    deform_modulated: bool = False,
    deform_num_groups: int = 1,
    extra_block: Optional[str] = None,
    extra_block_stage: str = "res4",
    nl: Optional[Mapping] = None,
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
        gc_stages: stages whose every residual block has a GC block (the paper's: :data:`GC_STAGES`).
        gc: ``ContextBlock`` options over its defaults (e.g. ``dict(ratio=1/4)``).
        gc_position: "after1x1" (default) or "afterAdd", Table 5(b).
        deform_stages, deform_modulated, deform_num_groups: DCN: stages, DCNv2, groups.
        extra_block: "nl", "snl" or "gc": one extra context block right before the last
            residual block of ``extra_block_stage`` (Table 5(a)); "gc" takes the ``gc`` options.
        nl: ``NonLocalBlock`` options of an "nl" extra block over its defaults (e.g.
            ``dict(mode="gaussian")`` for the instantiations of Table 1).

    Every option is checked here, when the config is instantiated; a bad value raises a
    ValueError naming the option and the allowed values.
    """
    gc_stages, deform_stages = _check_stage_names("gc_stages", gc_stages), _check_stage_names("deform_stages", deform_stages)
    _check_depth(depth, deform_stages, num_groups, width_per_group, dilations)
    gc_spec, extra_spec = _context_specs(gc, gc_position, extra_block, extra_block_stage, nl)
    bottleneck = dict(num_groups=num_groups, stride_in_1x1=stride_in_1x1, deform_modulated=deform_modulated)
    bottleneck.update(deform_num_groups=deform_num_groups)
    widths = dict(in_channels=stem_out_channels, out_channels=256 if depth >= 50 else 64)
    widths.update(bottleneck_channels=num_groups * width_per_group)
    stages = []
    for idx, (name, num_blocks) in enumerate(zip(STAGE_NAMES, NUM_BLOCKS_PER_STAGE[depth])):
        stage_kwargs = dict(norm=norm, context=gc_spec if name in gc_stages else None, context_position=gc_position)
        extra = extra_spec if name == extra_block_stage else None
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


# MODEL.GCNET.<KEY> -> the option of build_gcnet_resnet it sets. The other options come from
# detectron2's MODEL.RESNETS.* keys (depth, ResNeXt widths, norm, DCN, stride_in_1x1).
YACS_KEYS = {
    "STAGES": "gc_stages",
    "RATIO": "gc.ratio",
    "POOLING_TYPE": "gc.pooling_type",
    "FUSION_TYPES": "gc.fusion_types",
    "TRANSFORM": "gc.transform",
    "POSITION": "gc_position",
    "EXTRA_BLOCK": "extra_block",
    "EXTRA_BLOCK_STAGE": "extra_block_stage",
    "NL_MODE": "nl.mode",
    "STEM": "stem",
    "STEM_CHANNELS": "stem_channels",
    "DILATIONS": "dilations",
    "CONTRACT_DILATION": "contract_dilation",
}


def _gcnet_resnet_from_config(cfg: CfgNode, input_shape: ShapeSpec):
    """Keyword arguments of :func:`build_gcnet_resnet` from detectron2's MODEL.RESNETS.* keys
    and the MODEL.GCNET.* keys of :func:`gcnet.modeling.add_gcnet_config`."""
    resnets = cfg.MODEL.RESNETS
    options = options_from_yacs(cfg.MODEL.GCNET, YACS_KEYS)
    options["extra_block"] = options["extra_block"] or None
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


@configurable(from_config=_gcnet_resnet_from_config)
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
    """
    out_features = list(out_features) if out_features else ["linear" if num_classes else "res5"]
    allowed = ("stem",) + STAGE_NAMES + (("linear",) if num_classes else ())
    unknown = [f for f in out_features if f not in allowed]
    if unknown:
        raise ValueError(f"out_features has unknown names {unknown}; allowed: {allowed}")
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be an int in [0, 5], got {freeze_at!r}")
    if stem == "basic":
        stem_channels = stem_channels or [64]
        if len(stem_channels) != 1:
            raise ValueError(f"stem_channels must be 1 int for the basic stem, got {list(stem_channels)}")
        stem_module = BasicStem(in_channels, stem_channels[0], norm=resolve_norm(norm))
    elif stem == "deep":
        stem_module = DeepStem(in_channels, stem_channels or (32, 32, 64), norm=norm)
    else:
        raise ValueError(f"stem must be one of {STEM_TYPES}, got {stem!r}")
    stages = make_gcnet_resnet_stages(
        depth, stem_out_channels=stem_module.out_channels, norm=norm, **stage_kwargs
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
    spelt out: what the LazyConfigs and the MODEL.GCNET.* yacs keys start from."""
    defaults = option_defaults(build_gcnet_resnet, make_gcnet_resnet_stages)
    del defaults["stem_out_channels"]  # the stem's width, which build_gcnet_resnet passes on
    return defaults


@BACKBONE_REGISTRY.register()
def build_gcnet_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """GC-ResNet from a yacs config (MODEL.RESNETS.* and MODEL.GCNET.*)."""
    return build_gcnet_resnet(cfg, input_shape)
