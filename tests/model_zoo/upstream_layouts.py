"""State dicts with the exact key layouts and shapes of the upstream releases, built from
the upstream modules where they are installed here (torchvision's ResNet/ResNeXt, which is the
layout of mmdetection's and mmsegmentation's backbones, and mmcv's ContextBlock) and from the
upstream head definitions otherwise. Values are random."""

from typing import Dict, Optional

import torch
from mmcv.cnn import ContextBlock as MMCVContextBlock
from torchvision.models.resnet import Bottleneck, ResNet

Tensor = torch.Tensor
DEPTH_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def _random(shape, generator) -> Tensor:
    return torch.randn(shape, generator=generator) * 0.05


def randomize_batchnorm_(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that a wrong
    BatchNorm mapping shows in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def torchvision_resnet(depth: int, groups: int = 1, width: int = 64, seed: int = 0) -> ResNet:
    """A torchvision ResNet/ResNeXt with random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    return randomize_batchnorm_(ResNet(Bottleneck, DEPTH_BLOCKS[depth], groups=groups, width_per_group=width).eval())


def mmcv_context_block(channels: int, ratio: float, seed: int) -> MMCVContextBlock:
    torch.manual_seed(seed)
    block = MMCVContextBlock(channels, ratio)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.05)
    return block


def _conv_module(
    prefix: str, out_c: int, in_c: int, k: int, g, bias: bool = True, bn: bool = False
) -> Dict[str, Tensor]:
    sd = {f"{prefix}.conv.weight": _random((out_c, in_c, k, k), g)}
    if bias:
        sd[f"{prefix}.conv.bias"] = _random((out_c,), g)
    if bn:
        sd.update(_bn(f"{prefix}.bn", out_c, g))
    return sd


def _bn(prefix: str, c: int, g) -> Dict[str, Tensor]:
    return {
        f"{prefix}.weight": 1 + _random((c,), g),
        f"{prefix}.bias": _random((c,), g),
        f"{prefix}.running_mean": _random((c,), g),
        f"{prefix}.running_var": 1 + _random((c,), g).abs(),
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def _linear(prefix: str, out_c: int, in_c: int, g) -> Dict[str, Tensor]:
    return {f"{prefix}.weight": _random((out_c, in_c), g), f"{prefix}.bias": _random((out_c,), g)}


def mmdet_backbone(
    depth: int,
    groups: int = 1,
    width: int = 64,
    gc_ratio: Optional[float] = None,
    dcn: Optional[str] = None,
    seed: int = 0,
    resnet: Optional[ResNet] = None,
) -> Dict[str, Tensor]:
    """mmdetection's ResNet/ResNeXt backbone ("backbone." keys) with GC blocks in c3-c5 and
    DCN ("v2": conv2.conv_offset, "v1": conv2_offset) in c3-c5."""
    resnet = resnet or torchvision_resnet(depth, groups, width, seed)
    sd = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(seed)
    for layer_idx, num_blocks in enumerate(DEPTH_BLOCKS[depth], start=1):
        if layer_idx == 1:
            continue
        for i in range(num_blocks):
            block = getattr(resnet, f"layer{layer_idx}")[i]
            if gc_ratio is not None:
                gc = mmcv_context_block(block.conv3.out_channels, gc_ratio, seed + 100 * layer_idx + i)
                sd.update({f"backbone.layer{layer_idx}.{i}.context_block.{k}": v for k, v in gc.state_dict().items()})
            if dcn is not None:
                offset = "conv2.conv_offset" if dcn == "v2" else "conv2_offset"
                width_c = block.conv2.in_channels
                sd[f"backbone.layer{layer_idx}.{i}.{offset}.weight"] = _random((18, width_c, 3, 3), g)
                sd[f"backbone.layer{layer_idx}.{i}.{offset}.bias"] = _random((18,), g)
    return sd


def mmdet_neck_and_rpn(seed: int = 0, norm: bool = False) -> Dict[str, Tensor]:
    """FPN (with SyncBN after each conv when ``norm``) and RPN head."""
    g = torch.Generator().manual_seed(seed + 1)
    sd = {}
    for k, c in enumerate([256, 512, 1024, 2048]):
        sd.update(_conv_module(f"neck.lateral_convs.{k}", 256, c, 1, g, bias=not norm, bn=norm))
        sd.update(_conv_module(f"neck.fpn_convs.{k}", 256, 256, 3, g, bias=not norm, bn=norm))
    for name, out_c, k in [("rpn_conv", 256, 3), ("rpn_cls", 3, 1), ("rpn_reg", 12, 1)]:
        sd[f"rpn_head.{name}.weight"] = _random((out_c, 256, k, k), g)
        sd[f"rpn_head.{name}.bias"] = _random((out_c,), g)
    return sd


def mmdet_roi_heads(version: str, cascade: bool, seed: int = 0, norm: bool = False) -> Dict[str, Tensor]:
    """The shared-2fc box head (4conv1fc with SyncBN when ``norm``) and FCN mask head (one
    per stage for cascade). Both versions classify 81 classes; v1 also predicts boxes
    (class-specific heads) and masks for the background, first."""
    g = torch.Generator().manual_seed(seed + 2)
    prefix, predicted = ("roi_head.", 80) if version == "v2" else ("", 81)
    sd = {}
    for stage in range(3) if cascade else [None]:
        s = "" if stage is None else f".{stage}"
        if norm:
            for k in range(4):
                sd.update(_conv_module(f"{prefix}bbox_head{s}.shared_convs.{k}", 256, 256, 3, g, bias=False, bn=True))
            sd.update(_linear(f"{prefix}bbox_head{s}.shared_fcs.0", 1024, 256 * 7 * 7, g))
        else:
            sd.update(_linear(f"{prefix}bbox_head{s}.shared_fcs.0", 1024, 256 * 7 * 7, g))
            sd.update(_linear(f"{prefix}bbox_head{s}.shared_fcs.1", 1024, 1024, g))
        sd.update(_linear(f"{prefix}bbox_head{s}.fc_cls", 81, 1024, g))
        sd.update(_linear(f"{prefix}bbox_head{s}.fc_reg", 4 if cascade else 4 * predicted, 1024, g))
        for k in range(4):
            sd.update(_conv_module(f"{prefix}mask_head{s}.convs.{k}", 256, 256, 3, g, bias=not norm, bn=norm))
        sd[f"{prefix}mask_head{s}.upsample.weight"] = _random((256, 256, 2, 2), g)
        sd[f"{prefix}mask_head{s}.upsample.bias"] = _random((256,), g)
        sd[f"{prefix}mask_head{s}.conv_logits.weight"] = _random((predicted, 256, 1, 1), g)
        sd[f"{prefix}mask_head{s}.conv_logits.bias"] = _random((predicted,), g)
    return sd


def mmdet_checkpoint(
    version: str,
    depth: int,
    groups: int = 1,
    width: int = 64,
    gc_ratio=None,
    dcn: bool = False,
    cascade: bool = False,
    syncbn_heads: bool = False,
    seed: int = 0,
    resnet: Optional[ResNet] = None,
) -> dict:
    """A (Cascade) Mask R-CNN checkpoint of mmdetection "v2" or "v1" (original GCNet code);
    ``syncbn_heads``: SyncBN in FPN and heads, 4conv1fc box head."""
    sd = mmdet_backbone(depth, groups, width, gc_ratio, version if dcn else None, seed, resnet)
    sd.update(mmdet_neck_and_rpn(seed, norm=syncbn_heads))
    sd.update(mmdet_roi_heads(version, cascade, seed, norm=syncbn_heads))
    return {"meta": {"mmdet_version": "2.0" if version == "v2" else "1.0"}, "state_dict": sd}


def mmseg_checkpoint(depth: int, seed: int = 0, resnet: Optional[ResNet] = None, num_classes: int = 19) -> dict:
    """mmsegmentation's GCNet (ResNetV1c-D8 backbone, GCHead with ratio 1/4, FCN auxiliary head)
    for ``num_classes`` (19 Cityscapes, 150 ADE20K, 21 Pascal VOC)."""
    resnet = resnet or torchvision_resnet(depth, seed=seed)
    g = torch.Generator().manual_seed(seed)
    sd = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if not k.startswith(("fc.", "conv1.", "bn1."))}
    for idx, (c_out, c_in) in zip((0, 3, 6), [(32, 3), (32, 32), (64, 32)]):
        sd[f"backbone.stem.{idx}.weight"] = _random((c_out, c_in, 3, 3), g)
        sd.update(_bn(f"backbone.stem.{idx + 1}", c_out, g))
    sd.update(_conv_module("decode_head.convs.0", 512, 2048, 3, g, bias=False, bn=True))
    sd.update(_conv_module("decode_head.convs.1", 512, 512, 3, g, bias=False, bn=True))
    sd.update(_conv_module("decode_head.conv_cat", 512, 2048 + 512, 3, g, bias=False, bn=True))
    gc = mmcv_context_block(512, 1 / 4, seed)
    sd.update({f"decode_head.gc_block.{k}": v for k, v in gc.state_dict().items()})
    sd["decode_head.conv_seg.weight"] = _random((num_classes, 512, 1, 1), g)
    sd["decode_head.conv_seg.bias"] = _random((num_classes,), g)
    sd.update(_conv_module("auxiliary_head.convs.0", 256, 1024, 3, g, bias=False, bn=True))
    sd["auxiliary_head.conv_seg.weight"] = _random((num_classes, 256, 1, 1), g)
    sd["auxiliary_head.conv_seg.bias"] = _random((num_classes,), g)
    return {"meta": {"mmseg_version": "0.5"}, "state_dict": sd}
