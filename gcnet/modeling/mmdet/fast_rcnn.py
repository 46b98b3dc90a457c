"""mmdetection v1's detections from the RoI head's predictions."""

from typing import List, Tuple

import torch

from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances

from .boxes import clip_boxes, pixel_batched_nms

__all__ = ["MMDetV1FastRCNNOutputLayers", "SCALE_FACTOR_FIELD"]

# The field of the proposals (one row per box, the same for all boxes of an image) that holds
# the factors [x, y, x, y] the test image was resized from the original by: mmdetection v1 runs
# its final NMS on boxes in the original image.
SCALE_FACTOR_FIELD = "scale_factor"


class MMDetV1FastRCNNOutputLayers(FastRCNNOutputLayers):
    """detectron2's ``FastRCNNOutputLayers`` (same arguments) predicting as mmdetection v1's
    ``BBoxHead.get_det_bboxes``: boxes decoded by the ``box2box_transform``
    (:class:`MMDetV1Box2BoxTransform`) and clipped to the image's last pixel; per image, the
    class scores above ``test_score_thresh``, their boxes divided by the proposals'
    :data:`SCALE_FACTOR_FIELD` (when they carry it; :class:`MMDetV1RCNN` sets it) into the
    original image, where NMS at ``test_nms_thresh`` runs per class in the pixel convention;
    the ``test_topk_per_image`` best. The detections stay in the input's coordinates (the boxes
    multiplied back by the factors), as v1 pools the masks of them. Training is detectron2's.
    """

    def predict_boxes(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]):
        boxes = super().predict_boxes(predictions, proposals)
        return [clip_boxes(b, p.image_size, offset=1.0) for b, p in zip(boxes, proposals)]

    def inference(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]):
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        results = [self._detections(b, s, p) for b, s, p in zip(boxes, scores, proposals)]
        return [r for r, _ in results], [k for _, k in results]

    def _detections(self, boxes: torch.Tensor, scores: torch.Tensor, proposals: Instances):
        num_classes = scores.shape[1] - 1
        boxes = boxes.reshape(len(boxes), -1, 4).expand(-1, num_classes, -1)  # class-agnostic or not
        rows, classes = torch.nonzero(scores[:, :-1] > self.test_score_thresh, as_tuple=True)
        boxes, scores = boxes[rows, classes], scores[rows, classes]
        factors = boxes.new_ones(4)
        if proposals.has(SCALE_FACTOR_FIELD) and len(proposals):
            factors = proposals.get(SCALE_FACTOR_FIELD)[0].to(boxes.dtype)
        original = boxes / factors
        keep = pixel_batched_nms(original, scores, classes, self.test_nms_thresh)
        if self.test_topk_per_image >= 0:
            keep = keep[: self.test_topk_per_image]
        result = Instances(proposals.image_size)
        result.pred_boxes = Boxes(original[keep] * factors)
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        return result, rows[keep]
