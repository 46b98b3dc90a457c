"""mmdetection Mask R-CNN / Cascade Mask R-CNN checkpoints as detectron2 models.

* ``convert_mmdet``: mmdetection v2 and v3 (``roi_head.`` prefix, background as the last
  class, as detectron2).
* ``convert_mmdet_v1``: mmdetection v1, which the original GCNet repository is built on (no
  ``roi_head.`` prefix, background as the first class of the classifier and of the class
  specific box regressor and mask predictor).

Both cover the ResNet/ResNeXt backbone with GC blocks and DCN, FPN, RPN, the shared-2fc and
4conv1fc box heads, the FCN mask head, and the per-stage heads of Cascade Mask R-CNN.
"""

from typing import Dict, Mapping

import torch

from .common import BN, prefix_rules, rename, upstream_state_dict
from .imagenet import RESNET_RULES

__all__ = ["convert_mmdet", "convert_mmdet_v1"]

_BACKBONE_RULES = prefix_rules(
    RESNET_RULES
    + [
        (r"^layer(\d)\.(\d+)\.context_block\.(.+)$", lambda m: f"res{int(m[1]) + 1}.{m[2]}.context_block.{m[3]}"),
        # DCN offsets: mmdetection v2 nests them in the conv (DeformConv2dPack), v1 does not.
        (
            r"^layer(\d)\.(\d+)\.conv2(?:\.conv_offset|_offset)\.(weight|bias)$",
            lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv2_offset.{m[3]}",
        ),
    ],
    "backbone.",
    "backbone.bottom_up.",
)
_NECK_AND_RPN_RULES = [
    (r"^neck\.lateral_convs\.(\d)\.conv\.(weight|bias)$", lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}"),
    (rf"^neck\.lateral_convs\.(\d)\.bn\.{BN}$", lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.norm.{m[2]}"),
    (r"^neck\.fpn_convs\.(\d)\.conv\.(weight|bias)$", lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}"),
    (rf"^neck\.fpn_convs\.(\d)\.bn\.{BN}$", lambda m: f"backbone.fpn_output{int(m[1]) + 2}.norm.{m[2]}"),
    (r"^rpn_head\.rpn_conv\.(weight|bias)$", r"proposal_generator.rpn_head.conv.\1"),
    (r"^rpn_head\.rpn_cls\.(weight|bias)$", r"proposal_generator.rpn_head.objectness_logits.\1"),
    (r"^rpn_head\.rpn_reg\.(weight|bias)$", r"proposal_generator.rpn_head.anchor_deltas.\1"),
]


def _stage(match_group) -> str:
    """ "" for a Mask R-CNN head, ".<k>" for cascade stage k (the group matches "\\.\\d" or "")."""
    return match_group or ""


_ROI_RULES = [
    (
        r"^bbox_head(\.\d)?\.shared_fcs\.(\d)\.(weight|bias)$",
        lambda m: f"roi_heads.box_head{_stage(m[1])}.fc{int(m[2]) + 1}.{m[3]}",
    ),
    (
        r"^bbox_head(\.\d)?\.shared_convs\.(\d)\.conv\.weight$",
        lambda m: f"roi_heads.box_head{_stage(m[1])}.conv{int(m[2]) + 1}.weight",
    ),
    (
        rf"^bbox_head(\.\d)?\.shared_convs\.(\d)\.bn\.{BN}$",
        lambda m: f"roi_heads.box_head{_stage(m[1])}.conv{int(m[2]) + 1}.norm.{m[3]}",
    ),
    (r"^bbox_head(\.\d)?\.fc_cls\.(weight|bias)$", lambda m: f"roi_heads.box_predictor{_stage(m[1])}.cls_score.{m[2]}"),
    (r"^bbox_head(\.\d)?\.fc_reg\.(weight|bias)$", lambda m: f"roi_heads.box_predictor{_stage(m[1])}.bbox_pred.{m[2]}"),
    (
        r"^mask_head(\.\d)?\.convs\.(\d)\.conv\.(weight|bias)$",
        lambda m: f"roi_heads.mask_head{_stage(m[1])}.mask_fcn{int(m[2]) + 1}.{m[3]}",
    ),
    (
        rf"^mask_head(\.\d)?\.convs\.(\d)\.bn\.{BN}$",
        lambda m: f"roi_heads.mask_head{_stage(m[1])}.mask_fcn{int(m[2]) + 1}.norm.{m[3]}",
    ),
    (r"^mask_head(\.\d)?\.upsample\.(weight|bias)$", lambda m: f"roi_heads.mask_head{_stage(m[1])}.deconv.{m[2]}"),
    (
        r"^mask_head(\.\d)?\.conv_logits\.(weight|bias)$",
        lambda m: f"roi_heads.mask_head{_stage(m[1])}.predictor.{m[2]}",
    ),
]


def _background_last(model: Dict[str, torch.Tensor]) -> None:
    """mmdetection v1 puts the background first: move it to the end of the classifier, and
    drop it from the class-specific box regressor and mask predictor."""
    for key, value in model.items():
        if ".cls_score." in key:
            model[key] = torch.cat([value[1:], value[:1]])
        elif ".bbox_pred." in key and value.shape[0] > 4:  # class-specific: 4 per class
            model[key] = value[4:]
        elif key.startswith("roi_heads.mask_head") and ".predictor." in key:
            model[key] = value[1:]


def convert_mmdet(checkpoint: Mapping) -> dict:
    """An mmdetection v2/v3 checkpoint of a (Cascade) Mask R-CNN as a detectron2 checkpoint."""
    rules = _BACKBONE_RULES + _NECK_AND_RPN_RULES + prefix_rules(_ROI_RULES, "roi_head.", "")
    model = rename("mmdet", upstream_state_dict(checkpoint), rules)
    return {"model": model, "__author__": "mmdetection", "matching_heuristics": False}


def convert_mmdet_v1(checkpoint: Mapping) -> dict:
    """An mmdetection v1 checkpoint (the original GCNet repository) as a detectron2 checkpoint."""
    model = rename("mmdet_v1", upstream_state_dict(checkpoint), _BACKBONE_RULES + _NECK_AND_RPN_RULES + _ROI_RULES)
    _background_last(model)
    return {"model": model, "__author__": "mmdetection v1", "matching_heuristics": False}
