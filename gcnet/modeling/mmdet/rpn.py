"""mmdetection v1's region proposals."""

from typing import List, Tuple

import torch

from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances

from .boxes import clip_boxes, pixel_nms

__all__ = ["MMDetV1RPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class MMDetV1RPN(RPN):
    """detectron2's ``RPN`` (same arguments) whose test-time proposals are mmdetection v1's
    (``RPNHead.get_bboxes_single`` with ``min_bbox_size`` 0): per feature level the
    ``pre_nms_topk`` best anchors, decoded by the ``box2box_transform``
    (:class:`MMDetV1Box2BoxTransform`), clipped to the last pixel of the image, NMS at
    ``nms_thresh`` in the pixel convention; then the ``post_nms_topk`` best of all levels.

    Unlike detectron2's, boxes left without area by the clipping stay (v1 reads them as one
    pixel wide). Training is detectron2's.
    """

    def predict_proposals(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        if self.training:
            return super().predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes)
        with torch.no_grad():
            return [
                self._proposals_of_image(
                    anchors, [x[i] for x in pred_objectness_logits], [x[i] for x in pred_anchor_deltas], size
                )
                for i, size in enumerate(image_sizes)
            ]

    def _proposals_of_image(self, anchors: List[Boxes], logits: List[torch.Tensor], deltas: List[torch.Tensor], size):
        boxes, scores = [], []
        for anchors_i, logits_i, deltas_i in zip(anchors, logits, deltas):
            scores_i, top = logits_i.topk(min(self.pre_nms_topk[False], len(logits_i)))
            boxes_i = self.box2box_transform.apply_deltas(deltas_i.reshape(-1, 4)[top], anchors_i.tensor[top])
            boxes_i = clip_boxes(boxes_i, size, offset=1.0)
            keep = pixel_nms(boxes_i, scores_i, self.nms_thresh)[: self.post_nms_topk[False]]
            boxes.append(boxes_i[keep])
            scores.append(scores_i[keep])
        scores, boxes = torch.cat(scores), torch.cat(boxes)
        scores, best = scores.topk(min(self.post_nms_topk[False], len(scores)))
        proposals = Instances(size)
        proposals.proposal_boxes = Boxes(boxes[best])
        proposals.objectness_logits = scores
        return proposals
