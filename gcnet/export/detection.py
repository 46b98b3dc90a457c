"""Export of whole detectors (detectron2's ``GeneralizedRCNN``: the paper's GC Mask R-CNN, with
or without DCN), and the check of an exported detector against the eager one.

As detectron2's ``tools/deploy/export_model.py`` (tracing method), the model is wrapped in a
``TracingAdapter`` around ``model.inference(inputs, do_postprocess=False)`` and traced once with
``torch.jit.trace``; the ONNX file is exported from that trace with PyTorch's TorchScript-based
exporter (detectron2's proposal selection and RoI pooling index tensors by their values, which
``torch.export`` cannot trace).

The exported model takes one (3, H, W) float image in the model's input format (pixel values
0-255, resized as the test loader does; any H and W: the input size is dynamic in both
formats) and returns, in this order (:data:`DETECTION_OUTPUTS` for Mask R-CNN):

* ``pred_boxes`` (R, 4): x0, y0, x1, y1 in the input image's coordinates;
* ``pred_classes`` (R,) int64, ``pred_masks`` (R, 1, 28, 28): per-box mask probabilities,
  ``scores`` (R,);
* ``image_size`` (2,): H, W of the input.

The final resize to the original image and the pasting of the masks into it are left out, as
in detectron2's export; :func:`detections_from_outputs` does them (``detector_postprocess``).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from detectron2.export import TracingAdapter
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances, pairwise_iou

__all__ = [
    "DETECTION_OUTPUTS",
    "DetectionTolerance",
    "DetectionComparison",
    "detection_adapter",
    "detection_output_names",
    "detections_from_outputs",
    "compare_detections",
    "register_onnx_deform_conv",
]

DETECTION_OUTPUTS = ("pred_boxes", "pred_classes", "pred_masks", "scores", "image_size")


def _inference(model: nn.Module, image: torch.Tensor) -> Instances:
    """Detections in the coordinates of the input image, masks per box (not pasted)."""
    return model.inference([{"image": image}], do_postprocess=False)[0]


def detection_adapter(model: nn.Module, image: torch.Tensor) -> TracingAdapter:
    """A ``GeneralizedRCNN`` (in eval mode) wrapped for tracing on one (3, H, W) image."""
    if image.dim() != 3:
        raise ValueError(f"A detector exports with a (3, H, W) image, got shape {list(image.shape)}")
    return TracingAdapter(model.eval(), (image,), inference_func=_inference).eval()


def detection_output_names(model: nn.Module) -> List[str]:
    """The exported outputs: the Instances fields of the model's predictions, sorted (as
    ``TracingAdapter`` flattens them), and the image size: :data:`DETECTION_OUTPUTS` for
    Mask R-CNN, without "pred_masks" for a detector without a mask head."""
    return [name for name in DETECTION_OUTPUTS if name != "pred_masks" or getattr(model.roi_heads, "mask_on", False)]


def detections_from_outputs(outputs: Sequence, names: Sequence[str], height: int, width: int) -> Instances:
    """The exported (or eager, flattened) outputs as detectron2 ``Instances`` at the original
    image size ``height`` x ``width``: boxes rescaled, masks pasted (threshold 0.5), by
    detectron2's ``detector_postprocess``. ``outputs`` are left as they are (they are copied:
    the postprocessing scales and clips boxes in place)."""
    values = {name: torch.tensor(np.asarray(value)) for name, value in zip(names, outputs)}
    image_size = tuple(int(v) for v in values.pop("image_size"))
    instances = Instances(image_size)
    for name, value in values.items():
        instances.set(name, Boxes(value) if name == "pred_boxes" else value)
    return detector_postprocess(instances, height, width)


@dataclass(frozen=True)
class DetectionTolerance:
    """How close an exported detector must come to the eager model on the same image (float32,
    CPU). The matching rule: taking the eager detections by descending score, each pairs with
    the unpaired exported detection of its class, box within ``box_px`` pixels in every
    coordinate (at the original image size) and score within ``score``, that overlaps it most;
    the two match when every detection is paired and the paired per-box mask probabilities
    differ by at most ``mask_probability``. The IoU of the pasted masks (threshold 0.5) is
    reported: a pixel whose probability lies within that tolerance of 0.5 may flip."""

    box_px: float = 0.1
    score: float = 1e-4
    mask_probability: float = 1e-3


@dataclass
class DetectionComparison:
    """What :func:`compare_detections` found on one image."""

    tolerance: DetectionTolerance
    eager: int
    exported: int
    paired: int = 0
    max_box_px: float = 0.0
    max_score: float = 0.0
    max_mask_probability: float = 0.0
    min_mask_iou: float = 1.0

    @property
    def matches(self) -> bool:
        return (
            self.paired == self.eager == self.exported and self.max_mask_probability <= self.tolerance.mask_probability
        )

    def summary(self) -> str:
        unpaired = (
            f" ({self.eager - self.paired} eager and {self.exported - self.paired} exported unpaired)"
            if self.paired < max(self.eager, self.exported)
            else ""
        )
        return (
            f"{self.paired}/{self.eager} detections paired{unpaired}; largest |Δbox| {self.max_box_px:.2g} px, "
            f"|Δscore| {self.max_score:.2g}, |Δmask probability| {self.max_mask_probability:.2g}; "
            f"smallest pasted-mask IoU {self.min_mask_iou:.4f}"
        )


def _pairs(eager: Instances, exported: Instances, tolerance: DetectionTolerance) -> List[Tuple[int, int]]:
    """The pairs (eager index, exported index) of the matching rule of :class:`DetectionTolerance`."""
    iou = pairwise_iou(eager.pred_boxes, exported.pred_boxes)
    box_diff = (eager.pred_boxes.tensor[:, None, :] - exported.pred_boxes.tensor[None, :, :]).abs().amax(dim=2)
    score_diff = (eager.scores[:, None] - exported.scores[None, :]).abs()
    same_class = eager.pred_classes[:, None] == exported.pred_classes[None, :]
    candidates = same_class & (box_diff <= tolerance.box_px) & (score_diff <= tolerance.score)
    pairs, taken = [], set()
    for i in torch.argsort(eager.scores, descending=True).tolist():
        free = [j for j in candidates[i].nonzero().flatten().tolist() if j not in taken]
        if free:
            j = max(free, key=lambda c: float(iou[i, c]))
            pairs.append((i, j))
            taken.add(j)
    return pairs


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def compare_detections(
    eager: Instances,
    exported: Instances,
    eager_roi_masks: Optional[torch.Tensor] = None,
    exported_roi_masks: Optional[torch.Tensor] = None,
    tolerance: DetectionTolerance = DetectionTolerance(),
) -> DetectionComparison:
    """Pair the exported detections with the eager ones by the rule of
    :class:`DetectionTolerance` and measure the largest differences over the pairs.
    ``eager`` and ``exported`` are at the original image size (:func:`detections_from_outputs`);
    the RoI masks are the (R, 1, M, M) probabilities the models returned."""
    comparison = DetectionComparison(tolerance, len(eager), len(exported))
    pairs = _pairs(eager, exported, tolerance)
    comparison.paired = len(pairs)
    if not pairs:
        return comparison
    e, x = (torch.tensor(index) for index in zip(*pairs))
    comparison.max_box_px = (eager.pred_boxes.tensor[e] - exported.pred_boxes.tensor[x]).abs().max().item()
    comparison.max_score = (eager.scores[e] - exported.scores[x]).abs().max().item()
    if eager_roi_masks is not None:  # NaN stays NaN, and fails the match
        comparison.max_mask_probability = (eager_roi_masks[e] - exported_roi_masks[x]).abs().max().item()
    if eager.has("pred_masks") and exported.has("pred_masks"):
        comparison.min_mask_iou = min(_mask_iou(eager.pred_masks[i], exported.pred_masks[j]) for i, j in pairs)
    return comparison


def register_onnx_deform_conv() -> None:
    """Export torchvision's ``deform_conv2d`` (gcnet's DCN) as ONNX ``DeformConv`` (opset 19)
    in PyTorch's TorchScript-based exporter, which has no rule for it (its ``torch.export``
    exporter has one)."""
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
    def deform_conv2d(
        g,
        x,
        weight,
        offset,
        mask,
        bias,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
        dilation_h,
        dilation_w,
        groups,
        offset_groups,
        use_mask,
    ):
        inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op(
            "DeformConv",
            *inputs,
            dilations_i=[dilation_h, dilation_w],
            group_i=groups,
            offset_group_i=offset_groups,
            pads_i=[pad_h, pad_w, pad_h, pad_w],
            strides_i=[stride_h, stride_w],
        )

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d, 19)
