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

from ..norm import resolve_norm
from .blocks import DEFAULT_NL, GCBasicBlock, GCBottleneckBlock
from .stem import DeepStem

__all__ = [
    "STAGE_NAMES",
    "STEM_TYPES",
    "NUM_BLOCKS_PER_STAGE",
    "DEFAULT_GC",
    "make_gcnet_resnet_stages",
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
# The paper's GC block: attention pooling, additive fusion, r16 bottleneck with LN (Eq. 5).
DEFAULT_GC = dict(
    ratio=1 / 16, pooling_type="att", fusion_types=("channel_add",), transform="bottleneck_ln_relu"
)


def _merge_options(name: str, defaults: Mapping, given: Optional[Mapping]) -> dict:
    """``given`` over ``defaults``, refusing keys that ``defaults`` does not have."""
    options = dict(defaults, **(given or {}))
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; allowed: {sorted(defaults)}")
    return options


def _check_stage_names(option: str, stages: Sequence[str]) -> List[str]:
    if isinstance(stages, str):
        raise ValueError(f"{option} must be a list of stage names from {STAGE_NAMES}, got {stages!r}")
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"{option} has unknown stages {unknown}; allowed: {STAGE_NAMES}")
    return list(stages)


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
    """The residual stages res2-res5 of a (GC-)ResNet or ResNeXt.

    Args:
        depth: 18 or 34 (basic blocks), 50, 101 or 152 (bottlenecks).
        num_groups, width_per_group: ResNeXt cardinality and width of res2's 3x3 conv
            (32 and 4 for X-101-32x4d); 1 and 64 for ResNet. The width doubles per stage.
        stem_out_channels: channels entering res2.
        norm: "FrozenBN", "BN", "GN", "SyncBN" (:class:`gcnet.modeling.SyncBatchNorm`,
            which also runs on CPU), or anything detectron2's ``get_norm`` accepts.
        stride_in_1x1: put the stride of a bottleneck in its first 1x1 conv (caffe-style MSRA
            weights) instead of the 3x3 conv (pytorch-style torchvision/mmdetection weights).
        dilations: dilation of each stage res2-res5; a dilated stage keeps stride 1.
        contract_dilation: the first block of a dilated stage uses half the dilation
            (as mmsegmentation does).
        gc_stages: stages whose every residual block has a GC block (the paper: res3-res5).
        gc: ``ContextBlock`` options, merged onto :data:`DEFAULT_GC` (e.g.
            ``dict(ratio=1/4)``).
        gc_position: "after1x1" (default) or "afterAdd", Table 5(b).
        deform_stages: stages whose 3x3 convs are deformable.
        deform_modulated: DCNv2 instead of DCNv1.
        deform_num_groups: deformable groups.
        extra_block: "nl", "snl" or "gc": one extra context block right before the last
            residual block of ``extra_block_stage`` (Table 5(a)); a "gc" block takes the
            ``gc`` options.
        nl: ``NonLocalBlock`` options of an "nl" extra block, merged onto
            :data:`DEFAULT_NL` (e.g. ``dict(mode="gaussian")`` for the instantiations of
            Table 1).

    Returns:
        list of 4 lists of blocks, for ``detectron2.modeling.backbone.ResNet``.

    All options are checked here, when the config is instantiated; a bad value raises a
    ValueError naming the option and the allowed values.
    """
    if depth not in NUM_BLOCKS_PER_STAGE:
        raise ValueError(f"depth must be one of {sorted(NUM_BLOCKS_PER_STAGE)}, got {depth!r}")
    gc_stages = _check_stage_names("gc_stages", gc_stages)
    deform_stages = _check_stage_names("deform_stages", deform_stages)
    if extra_block_stage not in STAGE_NAMES:
        raise ValueError(f"extra_block_stage must be one of {STAGE_NAMES}, got {extra_block_stage!r}")
    if len(dilations) != 4 or any(not isinstance(d, int) or d < 1 for d in dilations):
        raise ValueError(f"dilations must be 4 positive ints (res2-res5), got {list(dilations)}")
    gc_options = _merge_options("gc", DEFAULT_GC, gc)
    nl_options = _merge_options("nl", DEFAULT_NL, nl)

    bottleneck = depth >= 50
    if not bottleneck:
        if deform_stages:
            raise ValueError(f"deform_stages needs a bottleneck depth (50, 101, 152), got depth={depth}")
        if num_groups != 1 or width_per_group != 64:
            raise ValueError(
                f"num_groups/width_per_group (ResNeXt) need a bottleneck depth (50, 101, 152), "
                f"got depth={depth}"
            )
        if any(d != 1 for d in dilations):
            raise ValueError(f"dilations need a bottleneck depth (50, 101, 152), got depth={depth}")

    in_channels = stem_out_channels
    out_channels = 256 if bottleneck else 64
    bottleneck_channels = num_groups * width_per_group
    stages = []
    for idx, (name, num_blocks) in enumerate(zip(STAGE_NAMES, NUM_BLOCKS_PER_STAGE[depth])):
        dilation = dilations[idx]
        first_stride = 1 if idx == 0 or dilation > 1 else 2
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        stage_kwargs = dict(
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            norm=norm,
            gc=gc_options if name in gc_stages else None,
            gc_position=gc_position,
            extra_block_per_block=[
                extra_block if name == extra_block_stage and i == num_blocks - 2 else None
                for i in range(num_blocks)
            ],
            extra_gc=gc_options,
            extra_nl=nl_options,
        )
        if bottleneck:
            stage_kwargs.update(
                bottleneck_channels=bottleneck_channels,
                num_groups=num_groups,
                stride_in_1x1=stride_in_1x1,
                dilation_per_block=[first_dilation] + [dilation] * (num_blocks - 1),
                deform=name in deform_stages,
                deform_modulated=deform_modulated,
                deform_num_groups=deform_num_groups,
            )
        try:
            blocks = ResNet.make_stage(
                GCBottleneckBlock if bottleneck else GCBasicBlock,
                num_blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                **stage_kwargs,
            )
        except ValueError as e:
            raise ValueError(f"{name} ({out_channels} channels): {e}") from e
        stages.append(blocks)
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return stages


def _gcnet_resnet_from_config(cfg: CfgNode, input_shape: ShapeSpec):
    """Keyword arguments of :func:`build_gcnet_resnet` from detectron2's MODEL.RESNETS.* keys
    and the MODEL.GCNET.* keys of :func:`gcnet.modeling.add_gcnet_config`."""
    resnets, gcnet = cfg.MODEL.RESNETS, cfg.MODEL.GCNET
    return dict(
        depth=resnets.DEPTH,
        in_channels=input_shape.channels,
        stem=gcnet.STEM,
        stem_channels=gcnet.STEM_CHANNELS if gcnet.STEM == "deep" else [resnets.STEM_OUT_CHANNELS],
        norm=resnets.NORM,
        out_features=resnets.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        num_groups=resnets.NUM_GROUPS,
        width_per_group=resnets.WIDTH_PER_GROUP,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
        dilations=gcnet.DILATIONS or (1, 1, 1, resnets.RES5_DILATION),
        contract_dilation=gcnet.CONTRACT_DILATION,
        gc_stages=gcnet.STAGES,
        gc=dict(
            ratio=gcnet.RATIO,
            pooling_type=gcnet.POOLING_TYPE,
            fusion_types=tuple(gcnet.FUSION_TYPES),
            transform=gcnet.TRANSFORM,
        ),
        gc_position=gcnet.POSITION,
        deform_stages=[s for s, on in zip(STAGE_NAMES, resnets.DEFORM_ON_PER_STAGE) if on],
        deform_modulated=resnets.DEFORM_MODULATED,
        deform_num_groups=resnets.DEFORM_NUM_GROUPS,
        extra_block=gcnet.EXTRA_BLOCK or None,
        extra_block_stage=gcnet.EXTRA_BLOCK_STAGE,
        nl=dict(mode=gcnet.NL_MODE),
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


@BACKBONE_REGISTRY.register()
def build_gcnet_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """GC-ResNet from a yacs config (MODEL.RESNETS.* and MODEL.GCNET.*)."""
    return build_gcnet_resnet(cfg, input_shape)
