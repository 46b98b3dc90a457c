"""Parameters, FLOPs and activations of a model at a given input size, counted the way the
paper's tables (5, 7 and 12) count them.

FLOPs are fvcore's, as in detectron2's ``analyze_model``: one fused multiply-add of a
convolution, linear layer or matrix product counts as one FLOP; BatchNorm counts one FLOP per
element and LayerNorm five; element-wise additions, multiplications, activations and softmax
are not counted.
What runs is fixed by the input size alone, as in the paper's counter (mmdetection's and
mmsegmentation's ``get_flops``):

* R-CNN models: the backbone and FPN, the RPN head on every level, and the RoI heads on a
  fixed set of RoIs (1000 for the box head of each stage, the first 100 of them for the mask
  head of each stage) instead of the input-dependent proposals and detections;
* :class:`~gcnet.modeling.ContextSegmentor`: the backbone and the main head on the whole input
  (the auxiliary head only trains);
* a detectron2 ``Backbone`` or any module that takes an image tensor: one forward pass.

A deformable convolution counts as the regular convolution of its shape (its bilinear
sampling is not counted), plus its offset convolution.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis, flop_count_table
from fvcore.nn.jit_handles import get_shape
from torch import nn

from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes

from gcnet.modeling import ContextSegmentor

from .heatmap import padded_input_size

__all__ = ["Complexity", "measure_complexity", "complexity_proxy", "paper_input_size", "comparison_table"]

# The input sizes of the paper's tables: mmdetection's get_flops (Tables 5 and 7) and the
# Cityscapes crop (Table 12); other models at ImageNet's.
PAPER_INPUT_SIZES = ((GeneralizedRCNN, (800, 1280)), (ContextSegmentor, (769, 769)))
IMAGENET_INPUT_SIZE = (224, 224)


@dataclass
class Complexity:
    """What :func:`measure_complexity` counts."""

    params: int
    flops: float
    activations: float
    flop_analysis: FlopCountAnalysis
    activation_analysis: ActivationCountAnalysis

    def table(self, max_depth: int = 3) -> str:
        """fvcore's per-module table of parameters, FLOPs and activations."""
        return flop_count_table(self.flop_analysis, max_depth=max_depth, activations=self.activation_analysis)


class _RCNNProxy(nn.Module):
    """An R-CNN with proposals and detections replaced by a fixed set of RoIs (see the module
    docstring); returns every head's outputs so that nothing is pruned from the trace. Its
    sub-modules are the model's, under the same names."""

    def __init__(self, model: GeneralizedRCNN, num_box_rois: int, num_mask_rois: int):
        super().__init__()
        self.backbone = model.backbone
        self.proposal_generator = model.proposal_generator
        self.roi_heads = model.roi_heads
        self.num_box_rois = num_box_rois
        self.num_mask_rois = num_mask_rois

    def _rois(self, height: int, width: int, device) -> Boxes:
        """``num_box_rois`` boxes of sizes 32 to 512 pixels spread over the image."""
        index = torch.arange(self.num_box_rois, device=device, dtype=torch.float32)
        size = 32 * 2 ** (index % 5)
        cx = (index * 97 % width).clamp(max=width - 1)
        cy = (index * 61 % height).clamp(max=height - 1)
        boxes = torch.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return Boxes(boxes)

    def forward(self, image: torch.Tensor):
        features = self.backbone(image)
        outputs = list(features.values())
        rpn = self.proposal_generator
        outputs += [t for ts in rpn.rpn_head([features[f] for f in rpn.in_features]) for t in ts]
        heads = self.roi_heads
        box_rois = self._rois(image.shape[-2], image.shape[-1], image.device)
        mask_rois = Boxes(box_rois.tensor[: self.num_mask_rois])
        box_features = heads.box_pooler([features[f] for f in heads.box_in_features], [box_rois])
        box_heads = heads.box_head if isinstance(heads.box_head, nn.ModuleList) else [heads.box_head]
        box_predictors = (
            heads.box_predictor if isinstance(heads.box_predictor, nn.ModuleList) else [heads.box_predictor]
        )
        for box_head, box_predictor in zip(box_heads, box_predictors):
            outputs += list(box_predictor(box_head(box_features)))
        if getattr(heads, "mask_on", False):
            mask_features = heads.mask_pooler([features[f] for f in heads.mask_in_features], [mask_rois])
            mask_heads = heads.mask_head if isinstance(heads.mask_head, nn.ModuleList) else [heads.mask_head]
            outputs += [mask_head.layers(mask_features) for mask_head in mask_heads]
        return tuple(outputs)


class _SegmentorProxy(nn.Module):
    """The main-head logits of a :class:`ContextSegmentor` on a whole image; its sub-modules
    are the model's backbone and main head, under the same names."""

    def __init__(self, model: ContextSegmentor):
        super().__init__()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.sem_seg_head.layers(self.backbone(image))


def _deform_conv_flops(inputs, outputs) -> int:
    """torchvision::deform_conv2d(input, weight, offset, mask, bias, ...): one multiply-add per
    output element and weight element of its group, as a regular convolution."""
    weight, output = get_shape(inputs[1]), get_shape(outputs[0])
    return int(np.prod(output) * np.prod(weight[1:]))


def complexity_proxy(model: nn.Module, num_box_rois: int = 1000, num_mask_rois: int = 100) -> nn.Module:
    """The module whose forward on a (1, 3, H, W) tensor runs what the paper counts for
    ``model`` (see the module docstring), with ``model``'s sub-modules under their names."""
    if isinstance(model, GeneralizedRCNN):
        if model.proposal_generator is None:
            raise ValueError("complexity_proxy: an R-CNN without a proposal generator is not supported")
        return _RCNNProxy(model, num_box_rois, num_mask_rois)
    if isinstance(model, ContextSegmentor):
        return _SegmentorProxy(model)
    return model


def measure_complexity(
    model: nn.Module,
    height: int,
    width: int,
    num_box_rois: int = 1000,
    num_mask_rois: int = 100,
) -> Complexity:
    """Count the parameters of ``model`` and its FLOPs and activations on one (3, height,
    width) input, padded up to the backbone's ``size_divisibility``.

    Args:
        num_box_rois, num_mask_rois: the fixed RoIs of an R-CNN's box and mask heads.
    """
    height, width = padded_input_size(model, (height, width))
    proxy = complexity_proxy(model, num_box_rois, num_mask_rois).eval()
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, height, width, device=device)
    with torch.no_grad():
        flops = FlopCountAnalysis(proxy, (image,)).set_op_handle("torchvision::deform_conv2d", _deform_conv_flops)
        activations = ActivationCountAnalysis(proxy, (image,)).set_op_handle(
            "torchvision::deform_conv2d", lambda inputs, outputs: int(np.prod(get_shape(outputs[0])))
        )
        for analysis in (flops, activations):
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total_flops, total_activations = flops.total(), activations.total()
    return Complexity(
        params=sum(p.numel() for p in model.parameters()),
        flops=float(total_flops),
        activations=float(total_activations),
        flop_analysis=flops,
        activation_analysis=activations,
    )


def paper_input_size(model: nn.Module) -> Tuple[int, int]:
    """The (height, width) the paper counts ``model`` at (:data:`PAPER_INPUT_SIZES`)."""
    for model_type, size in PAPER_INPUT_SIZES:
        if isinstance(model, model_type):
            return size
    return IMAGENET_INPUT_SIZE


def _delta(value: float, base: float, scale: float, digits: int) -> str:
    return "-" if value == base else f"{(value - base) / scale:+.{digits}f}"


def comparison_table(names: Sequence[str], results: Sequence[Complexity]) -> List[str]:
    """The lines of a Markdown table with a row per model (#params, FLOPs, activations) and
    the differences from the first."""
    base = results[0]
    lines = [
        "| config | #params (M) | Δ #params (M) | FLOPs (G) | Δ FLOPs (G) | activations (M) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, c in zip(names, results):
        lines.append(
            f"| {name} | {c.params / 1e6:.2f} | {_delta(c.params, base.params, 1e6, 2)} "
            f"| {c.flops / 1e9:.2f} | {_delta(c.flops, base.flops, 1e9, 2)} | {c.activations / 1e6:.1f} |"
        )
    return lines
