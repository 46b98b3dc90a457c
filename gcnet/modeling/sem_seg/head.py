"""The semantic segmentation head of the paper's Cityscapes models (Section 5.4, Table 12).

On the dilated c5 features: a 3x3 conv to 512 channels, a context operator (none for the FCN
baseline, a GC block, an NL or an SNL block), a 3x3 conv 512 -> 512, concatenation with c5,
a 3x3 conv to 512, dropout 0.1 and a 1x1 classifier. With one conv, no context and no
concatenation, the same class is the auxiliary FCN head on c4 (deep supervision).
"""

from types import MappingProxyType
from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from gcnet.layers import ContextSpec, context_spec, create_context

from ..defaults import options_from_yacs
from ..norm import get_norm

__all__ = ["ContextHead", "HEAD_GC", "AUXILIARY_HEAD", "YACS_KEYS", "AUXILIARY_YACS_KEYS"]

# The head's GC block (Section 5.4): ratio 1/4, ContextBlock's defaults otherwise.
HEAD_GC = MappingProxyType({"ratio": 1 / 4})
# The auxiliary FCN head on c4 (deep supervision): one conv, no context and no concatenation,
# loss weight 0.4; 256 channels as mmsegmentation's (the paper's recipe, after CCNet, has 512).
AUXILIARY_HEAD = MappingProxyType(
    dict(in_feature="res4", channels=256, num_convs=1, concat_input=False, context="none")
    | dict(loss_weight=0.4, loss_name="loss_sem_seg_aux")
)
# MODEL.GCNET_SEG.<KEY> -> the ContextHead option it sets (the others are detectron2's
# MODEL.SEM_SEG_HEAD.{IN_FEATURES, NUM_CLASSES, CONVS_DIM, NORM, IGNORE_VALUE, LOSS_WEIGHT}).
YACS_KEYS = {
    "CONTEXT": "context",
    "GC_RATIO": "gc.ratio",
    "GC_POOLING_TYPE": "gc.pooling_type",
    "GC_FUSION_TYPES": "gc.fusion_types",
    "NL_REDUCTION": "nl.reduction",
    "NL_MODE": "nl.mode",
    "ALIGN_CORNERS": "align_corners",
}
# MODEL.GCNET_SEG.AUX_<KEY> -> the auxiliary head's option ("" for AUX_IN_FEATURE: no auxiliary head).
AUXILIARY_YACS_KEYS = {"AUX_IN_FEATURE": "in_feature", "AUX_CHANNELS": "channels", "AUX_LOSS_WEIGHT": "loss_weight"}


@SEM_SEG_HEADS_REGISTRY.register()
class ContextHead(nn.Module):
    """A dense prediction head with a pluggable context operator.

    Args:
        in_feature: the backbone feature it reads ("res5"; "res4" for the auxiliary head).
        in_channels: channels of that feature.
        num_classes: output classes.
        channels: width of the head's convs (512 in the paper; mmsegmentation's auxiliary
            head uses 256).
        num_convs: 3x3 conv + norm + ReLU layers before the classifier (2 for the context
            head, 1 for the auxiliary head).
        concat_input: concatenate the input feature with the last conv's output, then fuse
            them with one more 3x3 conv.
        context: the kind of context module applied after the first conv: "none", "gc", "nl"
            or "snl" (or a spec of :func:`gcnet.layers.create_context`).
        gc: ``ContextBlock`` options of a "gc" context over :data:`HEAD_GC` (Table 12(b)
            varies ``pooling_type`` and ``fusion_types``).
        nl: ``NonLocalBlock`` options of an "nl" context (``reduction``, and ``mode``, the
            pairwise function: the instantiations of Table 4).
        norm: norm of the convs ("SyncBN" in the paper).
        dropout: dropout before the classifier.
        ignore_value: label value excluded from the loss.
        loss_weight: weight of this head's cross-entropy (0.4 for the auxiliary head).
        loss_name: key of the loss in the loss dict.
        align_corners: ``align_corners`` of the bilinear upsampling of the logits.

    ``forward(features, targets)`` returns ``(None, {loss_name: loss})`` in training, and
    ``(logits, {})`` in inference, with logits at the feature's resolution.
    """

    @configurable
    def __init__(
        self,
        *,
        in_feature: str,
        in_channels: int,
        num_classes: int,
        channels: int = 512,
        num_convs: int = 2,
        concat_input: bool = True,
        context: ContextSpec = "gc",
        gc: Optional[Mapping] = HEAD_GC,
        nl: Optional[Mapping] = None,
        norm="SyncBN",
        dropout: float = 0.1,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        loss_name: str = "loss_sem_seg",
        align_corners: bool = False,
    ):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        self.in_feature = in_feature
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.loss_name = loss_name
        self.align_corners = align_corners

        def conv3x3(conv_in: int) -> Conv2d:  # conv + norm + ReLU, as mmseg's ConvModule
            norm_layer = get_norm(norm, channels)
            return Conv2d(conv_in, channels, 3, padding=1, bias=False, norm=norm_layer, activation=F.relu)

        self.convs = nn.ModuleList(conv3x3(in_channels if i == 0 else channels) for i in range(num_convs))
        self.context = create_context(context_spec(context, gc=dict(HEAD_GC, **(gc or {})), nl=nl), channels)
        self.conv_cat = conv3x3(in_channels + channels) if concat_input else None
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = nn.Conv2d(channels, num_classes, kernel_size=1)
        for conv in [*self.convs, *([self.conv_cat] if self.conv_cat is not None else [])]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]):
        head = cfg.MODEL.SEM_SEG_HEAD
        in_feature = head.IN_FEATURES[0]
        return dict(
            options_from_yacs(cfg.MODEL.GCNET_SEG, YACS_KEYS),
            in_feature=in_feature,
            in_channels=input_shape[in_feature].channels,
            num_classes=head.NUM_CLASSES,
            channels=head.CONVS_DIM,
            norm=head.NORM,
            ignore_value=head.IGNORE_VALUE,
            loss_weight=head.LOSS_WEIGHT,
        )

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[self.in_feature]
        out = self.convs[0](x)
        if self.context is not None:
            out = self.context(out)
        for conv in self.convs[1:]:
            out = conv(out)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.predictor(self.dropout(out))

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Cross-entropy of the logits, upsampled to the label size, ignoring ``ignore_value``."""
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        loss = F.cross_entropy(logits, targets.long(), ignore_index=self.ignore_value)
        return {self.loss_name: loss * self.loss_weight}

    def forward(self, features: Dict[str, torch.Tensor], targets: Optional[torch.Tensor] = None):
        logits = self.layers(features)
        if self.training:
            return None, self.losses(logits, targets)
        return logits, {}
