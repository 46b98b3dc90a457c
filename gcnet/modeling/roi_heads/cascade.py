"""Cascade Mask R-CNN with a mask head per stage, as in the Cascade Mask R-CNN that the paper
(Table 7) and mmdetection train, with detectron2's or mmdetection's test-time scores."""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads, build_mask_head
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_inference
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances, pairwise_iou

__all__ = ["MultiMaskCascadeROIHeads", "SCORE_FUSIONS"]

# How the test-time class scores combine the cascade stages: the mean of the stages' softmax
# probabilities (detectron2), or the softmax of the mean of their logits (mmdetection).
SCORE_FUSIONS = ("mean_probabilities", "mean_logits")


def _test_proposals(boxes: torch.Tensor, previous: Instances) -> Instances:
    """A later cascade stage's RoIs at test time: the boxes the stage before predicted from the
    RoIs ``previous``, clipped to the image, as detectron2's ``CascadeROIHeads`` makes them,
    with the other fields of ``previous`` (what the first RoIs carry to the box predictors)."""
    proposal_boxes = Boxes(boxes.detach())
    proposal_boxes.clip(previous.image_size)
    proposals = Instances(previous.image_size, **previous.get_fields())
    proposals.proposal_boxes = proposal_boxes
    return proposals


@ROI_HEADS_REGISTRY.register()
class MultiMaskCascadeROIHeads(CascadeROIHeads):
    """detectron2's ``CascadeROIHeads`` with one mask head per cascade stage.

    In training, stage k's mask head learns from the foreground RoIs of stage k. At test time
    the final boxes go through every mask head and the mask probabilities are averaged, as
    mmdetection's ``CascadeRoIHead`` does.

    Args:
        mask_head: one mask head per stage (``roi_heads.mask_head.<stage>``).
        stage_loss_weights: weight of each stage's box and mask losses (mmdetection and the
            paper use 1, 0.5, 0.25); None for 1 each, as detectron2.
        score_fusion: the test-time class scores of the final boxes, one of
            :data:`SCORE_FUSIONS`: "mean_probabilities" averages the stages' softmax
            probabilities (detectron2's ``CascadeROIHeads``); "mean_logits" takes the softmax of
            the mean of the stages' logits (mmdetection's ``CascadeRoIHead``, v1 to v3; the zoo's
            cascade models set it).
    """

    @configurable
    def __init__(
        self,
        *,
        mask_head: Sequence[nn.Module],
        stage_loss_weights: Optional[Sequence[float]] = None,
        score_fusion: str = "mean_probabilities",
        **kwargs,
    ):
        super().__init__(mask_head=nn.ModuleList(mask_head), **kwargs)
        if len(self.mask_head) != self.num_cascade_stages:
            raise ValueError(
                f"mask_head must hold one head per cascade stage ({self.num_cascade_stages}), got {len(self.mask_head)}"
            )
        weights = list(stage_loss_weights) if stage_loss_weights is not None else [1.0] * self.num_cascade_stages
        if len(weights) != self.num_cascade_stages:
            raise ValueError(f"stage_loss_weights must have {self.num_cascade_stages} values, got {weights}")
        self.stage_loss_weights = weights
        if score_fusion not in SCORE_FUSIONS:
            raise ValueError(f"score_fusion must be one of {SCORE_FUSIONS}, got {score_fusion!r}")
        self.score_fusion = score_fusion
        self._stage_proposals: List[List[Instances]] = []

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        """One mask head per stage (MODEL.ROI_BOX_CASCADE_HEAD.IOUS), for yacs configs."""
        ret = super()._init_mask_head(cfg, input_shape)
        if ret.get("mask_head") is not None:
            resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
            channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
            shape = ShapeSpec(channels=channels, width=resolution, height=resolution)
            stages = len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS)
            ret["mask_head"] = [ret["mask_head"]] + [build_mask_head(cfg, shape) for _ in range(stages - 1)]
        return ret

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals, stage, targets):
        """detectron2's labelling of a later stage's RoIs (in training), plus the masks of their
        matched ground truth; recorded for that stage's mask head. (detectron2 has no public
        hook that sees a later stage's labelled RoIs: this override of a private method of its
        ``CascadeROIHeads``, checked against detectron2 at 02b5c4e, is the one left.)"""
        proposals = super()._match_and_label_boxes(proposals, stage, targets)
        if self.mask_on:
            for proposals_per_image, targets_per_image in zip(proposals, targets):
                if len(targets_per_image):
                    iou = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
                    matched_idxs, _ = self.proposal_matchers[stage](iou)
                    proposals_per_image.gt_masks = targets_per_image.gt_masks[matched_idxs]
        self._stage_proposals.append(proposals)
        return proposals

    def _forward_box(self, features, proposals, targets=None):
        # The labelled RoIs of each stage, for its mask head: the first stage's are these.
        self._stage_proposals = [proposals] if self.training else []
        if not self.training and self.score_fusion == "mean_logits":
            return self._predict_from_mean_logits(features, proposals)
        out = super()._forward_box(features, proposals, targets)
        if not self.training:
            return out
        return {name: value * self.stage_loss_weights[int(name.rsplit("_stage", 1)[1])] for name, value in out.items()}

    def _predict_from_mean_logits(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """mmdetection's cascade test (``CascadeRoIHead._refine_roi``): every stage refines the
        boxes of the stage before, the class scores are the softmax of the mean of the stages'
        logits, and the boxes those of the last stage."""
        features = [features[f] for f in self.box_in_features]
        stage_logits = []
        for k in range(self.num_cascade_stages):
            box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
            predictions = self.box_predictor[k](self.box_head[k](box_features))
            stage_logits.append(predictions[0])
            if k + 1 < self.num_cascade_stages:  # the next stage refines this stage's boxes
                boxes = self.box_predictor[k].predict_boxes(predictions, proposals)
                proposals = [_test_proposals(b, p) for b, p in zip(boxes, proposals)]
        # The last stage's boxes and the mean logits, through the last predictor's own inference.
        return self.box_predictor[-1].inference((sum(stage_logits) / len(stage_logits), predictions[1]), proposals)[0]

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        features = [features[f] for f in self.mask_in_features]
        if self.training:
            losses = {}
            for stage, (head, proposals) in enumerate(zip(self.mask_head, self._stage_proposals)):
                foreground, _ = select_foreground_proposals(proposals, self.num_classes)
                roi_features = self.mask_pooler(features, [x.proposal_boxes for x in foreground])
                loss = head(roi_features, foreground)["loss_mask"]
                losses[f"loss_mask_stage{stage}"] = loss * self.stage_loss_weights[stage]
            self._stage_proposals = []
            return losses
        roi_features = self.mask_pooler(features, [x.pred_boxes for x in instances])
        stage_masks = []
        for head in self.mask_head:
            mask_rcnn_inference(head.layers(roi_features), instances)
            stage_masks.append([x.pred_masks for x in instances])
        for idx, x in enumerate(instances):
            x.pred_masks = sum(masks[idx] for masks in stage_masks) / len(stage_masks)
        return instances
