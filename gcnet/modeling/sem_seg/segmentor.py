"""The semantic segmentation model of Section 5.4: a dilated backbone, a context head on c5
and an auxiliary head on c4, with whole-image or sliding-window inference and multi-scale +
flip test-time augmentation."""

import itertools
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList

from ..defaults import options_from_yacs
from .head import AUXILIARY_HEAD, AUXILIARY_YACS_KEYS, ContextHead

__all__ = ["ContextSegmentor", "INFERENCE_MODES", "OUTPUT_RESIZES", "INFERENCE", "MULTI_SCALE_IMAGES", "YACS_KEYS"]

INFERENCE_MODES = ("whole", "slide")
# What is resized to the output size at test time: the class probabilities (averaged over the
# test-time augmentations), or each augmentation's logits before its softmax (mmsegmentation).
OUTPUT_RESIZES = ("probabilities", "logits")
# How ContextSegmentor predicts by default: the whole image at one scale, without flipping.
INFERENCE = MappingProxyType(
    dict(
        mode="whole", crop_size=(769, 769), stride=(513, 513), scales=(1.0,), flip=False, output_resize="probabilities"
    )
)
# The key of a model input that holds its image resized for each test scale
# (``gcnet.data.SemSegDatasetMapper``'s ``test_ratios``).
MULTI_SCALE_IMAGES = "multi_scale_images"
# MODEL.GCNET_SEG.<KEY> -> the ContextSegmentor option it sets.
YACS_KEYS = {
    "INFERENCE_MODE": "inference.mode",
    "CROP_SIZE": "inference.crop_size",
    "STRIDE": "inference.stride",
    "TEST_SCALES": "inference.scales",
    "TEST_FLIP": "inference.flip",
}


@META_ARCH_REGISTRY.register()
class ContextSegmentor(nn.Module):
    """Backbone + :class:`ContextHead` (+ an auxiliary head that only adds a training loss).

    Args:
        backbone: a detectron2 backbone with the features the heads read.
        sem_seg_head: the main head.
        auxiliary_head: a head whose loss is added in training (deep supervision), or None.
        pixel_mean, pixel_std: input normalization.
        inference: over :data:`INFERENCE`, ``mode`` "whole" (the whole image at once) or
            "slide" (``crop_size`` windows every ``stride`` pixels, logits averaged where they
            overlap); ``scales`` (the input image resized in the model; or the images of an
            input's ``MULTI_SCALE_IMAGES``, resized from the original as mmsegmentation does)
            and ``flip`` for test-time augmentation (class probabilities averaged over all scale
            and flip combinations); ``output_resize``, one of
            :data:`OUTPUT_RESIZES`: "probabilities" resizes the averaged probabilities from the
            input size to the output size, "logits" resizes each augmentation's logits to the
            output size before its softmax, as mmsegmentation (``EncoderDecoder``, v0.x and 1.x)
            does.

    In inference each output is ``{"sem_seg": (K, height, width) class probabilities}``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: ContextHead,
        auxiliary_head: Optional[ContextHead] = None,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        inference: Optional[Mapping] = INFERENCE,
    ):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.auxiliary_head = auxiliary_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        unknown = sorted(set(inference or {}) - set(INFERENCE))
        if unknown:
            raise ValueError(f"inference has unknown keys {unknown}; allowed: {', '.join(sorted(INFERENCE))}")
        inference = dict(INFERENCE, **(inference or {}))
        self.mode, self.flip = inference["mode"], bool(inference["flip"])
        self.crop_size, self.stride, self.scales = (tuple(inference[k]) for k in ("crop_size", "stride", "scales"))
        self.output_resize = inference["output_resize"]
        if self.output_resize not in OUTPUT_RESIZES:
            raise ValueError(f"inference.output_resize must be one of {OUTPUT_RESIZES}, got {self.output_resize!r}")
        if self.mode not in INFERENCE_MODES:
            raise ValueError(f"inference.mode must be one of {INFERENCE_MODES}, got {self.mode!r}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"inference.scales must be positive numbers, got {list(self.scales)}")

    @classmethod
    def from_config(cls, cfg: CfgNode):
        backbone = build_backbone(cfg)
        seg, head = cfg.MODEL.GCNET_SEG, cfg.MODEL.SEM_SEG_HEAD
        auxiliary = dict(AUXILIARY_HEAD, **options_from_yacs(seg, AUXILIARY_YACS_KEYS))
        auxiliary_head = None
        if auxiliary["in_feature"]:
            auxiliary_head = ContextHead(
                **auxiliary,
                in_channels=backbone.output_shape()[auxiliary["in_feature"]].channels,
                num_classes=head.NUM_CLASSES,
                norm=head.NORM,
                ignore_value=head.IGNORE_VALUE,
                align_corners=seg.ALIGN_CORNERS,
            )
        return dict(
            options_from_yacs(seg, YACS_KEYS),
            backbone=backbone,
            sem_seg_head=build_sem_seg_head(cfg, backbone.output_shape()),
            auxiliary_head=auxiliary_head,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """A (C, H, W) input image on the model's device, less the pixel mean, over the std."""
        return (image.to(self.device) - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: List[Dict]):
        """Training: the losses. Inference: per input, the class probabilities at its "height"
        and "width"; an input with ``MULTI_SCALE_IMAGES`` (the image resized from the original
        for each test scale, as mmsegmentation does) is predicted from those images."""
        images = [self.normalize(x["image"]) for x in batched_inputs]
        if not self.training:
            outputs = []
            for image, x in zip(images, batched_inputs):
                scaled = x.get(MULTI_SCALE_IMAGES)
                scaled = [self.normalize(i) for i in scaled] if scaled is not None else None
                height, width = x.get("height", image.shape[1]), x.get("width", image.shape[2])
                outputs.append({"sem_seg": self.predict(image, height, width, scaled_images=scaled)})
            return outputs
        images = ImageList.from_tensors(images, pad_value=0.0)
        targets = ImageList.from_tensors(
            [x["sem_seg"].to(self.device) for x in batched_inputs],
            pad_value=self.sem_seg_head.ignore_value,
        ).tensor
        features = self.backbone(images.tensor)
        losses = self.sem_seg_head(features, targets)[1]
        if self.auxiliary_head is not None:
            losses.update(self.auxiliary_head(features, targets)[1])
        return losses

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of the main head for a (N, C, H, W) batch, at its full resolution."""
        logits = self.sem_seg_head.layers(self.backbone(images))
        return self._resize(logits, images.shape[-2:])

    def predict(
        self, image: torch.Tensor, height: int, width: int, scaled_images: Optional[Sequence[torch.Tensor]] = None
    ) -> torch.Tensor:
        """(K, height, width) class probabilities of one normalized (C, H, W) image, averaged
        over the test scales and flips (resized to the output size as ``output_resize`` says).

        Args:
            scaled_images: the normalized image already resized for each test scale (resized
                from the original image, as mmsegmentation's ``MultiScaleFlipAug``); then
                ``inference.scales`` must be (1.0,), and ``image`` only sets the size the
                probabilities are averaged at when ``output_resize`` is "probabilities".
        """
        if scaled_images is not None and self.scales != (1.0,):
            raise ValueError(
                "the input holds images for its own test scales; inference.scales must be [1.0], "
                f"got {list(self.scales)}"
            )
        views = [x[None] for x in scaled_images] if scaled_images is not None else self._scaled(image)
        size = (height, width) if self.output_resize == "logits" else tuple(image.shape[-2:])
        probabilities = 0
        augmentations = list(itertools.product(views, (False, True) if self.flip else (False,)))
        for x, flip in augmentations:
            if flip:
                x = x.flip(-1)
            logits = self._slide(x) if self.mode == "slide" else self.logits(x)
            if flip:
                logits = logits.flip(-1)
            probabilities = probabilities + self._resize(logits, size).softmax(dim=1)
        probabilities = self._resize(probabilities / len(augmentations), (height, width))
        return probabilities[0]

    def _scaled(self, image: torch.Tensor) -> List[torch.Tensor]:
        """The (1, C, H, W) image at each of ``inference.scales``, resized in the model."""
        align_corners = self.sem_seg_head.align_corners
        return [
            image[None]
            if scale == 1
            else F.interpolate(image[None], scale_factor=scale, mode="bilinear", align_corners=align_corners)
            for scale in self.scales
        ]

    def _slide(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` from ``crop_size`` windows every ``stride`` pixels, averaged where
        windows overlap (the last window of a row or column ends at the image border)."""
        (h, w), (crop_h, crop_w), (stride_h, stride_w) = x.shape[-2:], self.crop_size, self.stride
        rows = max(h - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(w - crop_w + stride_w - 1, 0) // stride_w + 1
        total, count = None, x.new_zeros((1, 1, h, w))
        for row, col in itertools.product(range(rows), range(cols)):
            y1, x1 = row * stride_h, col * stride_w
            y2, x2 = min(y1 + crop_h, h), min(x1 + crop_w, w)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            logits = self.logits(x[..., y1:y2, x1:x2])
            if total is None:
                total = x.new_zeros((x.shape[0], logits.shape[1], h, w))
            total[..., y1:y2, x1:x2] += logits
            count[..., y1:y2, x1:x2] += 1
        return total / count

    def _resize(self, x: torch.Tensor, size) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=self.sem_seg_head.align_corners)
