"""The global context (GC) block of GCNet and the ablation variants of its design.

The block follows the paper's global context modeling framework (Eq. 4),

    z_i = F(x_i, delta(sum_j alpha_j x_j)),

instantiated as Eq. 5:

    z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k x_j) x_j)).

Every choice the paper ablates is an option of :class:`ContextBlock`:

* context modeling ``pooling_type``: attention pooling ("att", Eq. 5) or global average
  pooling ("avg", alpha_j = 1/N_p as in SE), Table 5(f);
* fusion ``fusion_types``: broadcast addition ("channel_add", Eq. 5) and/or channel
  rescaling ("channel_mul": x * sigmoid(delta(.)), as in SE), Table 5(f);
* transform ``transform``: the bottleneck designs of Table 5(d).

How the block computes its output, all here: :meth:`ContextBlock.forward` returns z as a new
tensor; a caller that owns ``x`` (a residual block, its branch) asks for z written into ``x``
(``inplace=True``), which the block does wherever no gradient needs ``x``, and in training it
may say how ``x`` was made (an :class:`AffineSource`), so that the pooling's backward need not
keep ``x``. The attention pooling itself is :func:`conv_attention_pool`.

Sub-module names (``conv_mask``, ``channel_add_conv``, ``channel_mul_conv``) are those of the
reference implementation (the original GCNet repository and mmcv), so released checkpoints
load without renaming.
"""

from collections import abc
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention_pool import AffineSource, attention_pool, conv_attention_pool

__all__ = ["ContextBlock", "check_feature_map"]

POOLING_TYPES = ("att", "avg")
FUSION_TYPES = ("channel_add", "channel_mul")
# Table 5(d): "w/o ratio", "r16", "r16+ReLU", "r16+LN+ReLU".
TRANSFORM_TYPES = ("linear", "bottleneck", "bottleneck_relu", "bottleneck_ln_relu")


def check_feature_map(x: torch.Tensor, in_channels: int, owner: str) -> None:
    """Raise a ValueError unless ``x`` is a 4D (N, in_channels, H, W) tensor."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{owner}: input x must have shape (N, {in_channels}, H, W), got {list(x.shape)}")


def _check_options(
    in_channels: int, ratio: float, pooling_type: str, fusion_types: Sequence[str], transform: str
) -> int:
    """The bottleneck width int(in_channels * ratio), after checking every option of
    :class:`ContextBlock`; a bad one raises a ValueError naming it and what it must be."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"ContextBlock: in_channels must be a positive int, got {in_channels!r}")
    if pooling_type not in POOLING_TYPES:
        raise ValueError(f"ContextBlock: pooling_type must be one of {POOLING_TYPES}, got {pooling_type!r}")
    if isinstance(fusion_types, str) or not isinstance(fusion_types, abc.Sequence):
        raise ValueError(
            f"ContextBlock: fusion_types must be a sequence drawn from {FUSION_TYPES}, got {fusion_types!r}"
        )
    if len(fusion_types) == 0:
        raise ValueError(f"ContextBlock: fusion_types must not be empty; choose from {FUSION_TYPES}")
    unknown = [f for f in fusion_types if f not in FUSION_TYPES]
    if unknown:
        raise ValueError(f"ContextBlock: fusion_types must be drawn from {FUSION_TYPES}, got {unknown!r}")
    if transform not in TRANSFORM_TYPES:
        raise ValueError(f"ContextBlock: transform must be one of {TRANSFORM_TYPES}, got {transform!r}")
    if not 0 < ratio <= 1:
        raise ValueError(f"ContextBlock: ratio must be in (0, 1] (e.g. 1/16 for the paper's r16), got {ratio!r}")
    planes = int(in_channels * ratio)
    if planes < 1:
        product = f"{in_channels} * {ratio} = {in_channels * ratio}"
        raise ValueError(f"ContextBlock: in_channels * ratio must be >= 1 channel, got {product}")
    return planes


def _make_transform(in_channels: int, planes: int, transform: str) -> nn.Sequential:
    """The feature transform delta(.) of Eq. 4; its last module is always a 1x1 conv to C."""
    if transform == "linear":
        return nn.Sequential(nn.Conv2d(in_channels, in_channels, kernel_size=1))
    layers = [nn.Conv2d(in_channels, planes, kernel_size=1)]
    if transform == "bottleneck_ln_relu":
        layers.append(nn.LayerNorm([planes, 1, 1]))
    if transform in ("bottleneck_relu", "bottleneck_ln_relu"):
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Conv2d(planes, in_channels, kernel_size=1))
    return nn.Sequential(*layers)


class ContextBlock(nn.Module):
    """Global context block (Eq. 5 of the paper; Fig. 4(c)).

    Args:
        in_channels: C, the channels of the input and output.
        ratio: bottleneck ratio as a fraction of C, in (0, 1]: 1/16 (the default) is the
            paper's "r16", 1/4 its "r4". The hidden width is ``int(C * ratio)``. Ignored by
            ``transform="linear"``, which has no bottleneck.
        pooling_type: "att" (attention pooling, Eq. 5) or "avg" (global average pooling).
        fusion_types: a non-empty subset of ("channel_add", "channel_mul"). With both, the
            block rescales first and adds second, as the reference implementation does.
        transform: the bottleneck design of Table 5(d): "linear" (one 1x1 conv C -> C,
            the SNL transform, "w/o ratio"), "bottleneck" (two 1x1 convs, "r16"),
            "bottleneck_relu" ("r16+ReLU") or "bottleneck_ln_relu" ("r16+LN+ReLU", Eq. 5).

    Initialisation follows the reference implementation: ``conv_mask`` is Kaiming-normal
    (fan_in) with zero bias, and the last conv of every fusion branch is zero (weight and
    bias). A new block with "channel_add" fusion alone is therefore the identity; a
    "channel_mul" branch starts as a rescaling by sigmoid(0) = 1/2.
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float = 1 / 16,
        pooling_type: str = "att",
        fusion_types: Sequence[str] = ("channel_add",),
        transform: str = "bottleneck_ln_relu",
    ):
        super().__init__()
        planes = _check_options(in_channels, ratio, pooling_type, fusion_types, transform)
        self.in_channels = in_channels
        self.ratio = ratio
        self.planes = planes
        self.pooling_type = pooling_type
        self.fusion_types: Tuple[str, ...] = tuple(fusion_types)
        self.transform = transform
        # Whether inference may compute this block together with the 1x1 conv that makes x
        # (forward_from_source): this module is then not called, and its hooks do not fire.
        # Whatever reads the block's input turns it off (ContextAttentionRecorder does).
        self.fuse_into_producer = True

        self.conv_mask: Optional[nn.Conv2d] = (
            nn.Conv2d(in_channels, 1, kernel_size=1) if pooling_type == "att" else None
        )
        self.channel_add_conv: Optional[nn.Sequential] = (
            _make_transform(in_channels, planes, transform) if "channel_add" in self.fusion_types else None
        )
        self.channel_mul_conv: Optional[nn.Sequential] = (
            _make_transform(in_channels, planes, transform) if "channel_mul" in self.fusion_types else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.conv_mask is not None:
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        for branch in (self.channel_add_conv, self.channel_mul_conv):
            if branch is not None:
                nn.init.zeros_(branch[-1].weight)
                nn.init.zeros_(branch[-1].bias)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The pooling weights alpha_j of Eq. 4 as an (N, H, W) map that sums to 1 per image:
        softmax_j(W_k x_j) for attention pooling (Eq. 5, the maps of Fig. 5), 1/N_p for "avg"."""
        check_feature_map(x, self.in_channels, "ContextBlock")
        n, _, h, w = x.shape
        if self.conv_mask is None:
            return x.new_full((n, h, w), 1.0 / (h * w))
        return self.conv_mask(x).reshape(n, h * w).float().softmax(dim=1).reshape(n, h, w)

    def spatial_pool(self, x: torch.Tensor, source: Optional[AffineSource] = None) -> torch.Tensor:
        """The context modeling term sum_j alpha_j x_j of Eq. 4, shape (N, C, 1, 1).

        ``source``, where given, describes how ``x`` was computed (see :class:`AffineSource`);
        the attention pooling's backward then reads it instead of keeping ``x``."""
        if self.conv_mask is not None:
            if torch.jit.is_scripting():  # TorchScript cannot script custom autograd functions
                return attention_pool(x, self.conv_mask(x))
            return conv_attention_pool(x, self.conv_mask.weight, self.conv_mask.bias, source)
        return x.mean(dim=(2, 3), keepdim=True)

    def pool_from_source(self, source: AffineSource) -> torch.Tensor:
        """The context sum_j alpha_j x_j of Eq. 4, shape (N, C, 1, 1), of the ``x`` that
        ``source`` describes (x = scale * P h + shift), from h alone, x never read: the logits
        W_k x_j = (W_k * scale) P h_j + (W_k shift + b), and, the weights summing to 1,
        sum_j alpha_j x_j = scale * P (sum_j alpha_j h_j) + shift. Where h is narrower than x
        (the input of a bottleneck's last 1x1 conv: C/4 channels), it reads a quarter of the
        bytes, and x need not exist yet (:meth:`forward` computes the same)."""
        features, projection, scale, shift = source
        projection = projection.reshape(projection.shape[0], -1)
        if self.conv_mask is None:
            pooled = features.mean(dim=(2, 3), keepdim=True)
        else:
            w_k = self.conv_mask.weight.reshape(-1)
            weight = ((w_k * scale) @ projection).reshape(1, -1, 1, 1)
            bias = (w_k @ shift).reshape(1) + self.conv_mask.bias
            pooled = conv_attention_pool(features, weight, bias)
        context = (pooled.flatten(1) @ projection.t()) * scale + shift
        return context.reshape(*context.shape, 1, 1)

    def fusion_terms(self, context: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The transform delta(.) of Eq. 4 of the pooled ``context``, as the (N, C, 1, 1) factor
        sigmoid(delta_mul(c)) ("channel_mul") and term delta_add(c) ("channel_add") of
        z = x * factor + term; None for a fusion the block does not use."""
        scale = torch.sigmoid(self.channel_mul_conv(context)) if self.channel_mul_conv is not None else None
        shift = self.channel_add_conv(context) if self.channel_add_conv is not None else None
        return scale, shift

    def fuse(self, x: torch.Tensor, context: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """The fusion F(x_i, delta(c)) of Eq. 4, z = x * sigmoid(delta_mul(c)) + delta_add(c) with
        the terms of the configured fusions: a new tensor, or ``x`` itself, written in place, with
        ``inplace``."""
        scale, shift = self.fusion_terms(context)
        if inplace:
            if scale is not None:
                x.mul_(scale)
            return x if shift is None else x.add_(shift)
        out = x if scale is None else x * scale
        if shift is not None:
            # A product made here is this block's own tensor: adding to it in place is safe.
            out = out + shift if scale is None else out.add_(shift)
        return out

    def forward(self, x: torch.Tensor, source: Optional[AffineSource] = None, inplace: bool = False) -> torch.Tensor:
        """z = x * sigmoid(delta_mul(c)) + delta_add(c) with c = sum_j alpha_j x_j (Eq. 4; Eq. 5
        for the default options).

        Args:
            x: (N, C, H, W) features.
            source: where given, how ``x`` was computed, when it is an affine map of narrower
                features (see :class:`AffineSource`; a residual block's last 1x1 conv and frozen
                norm): the attention pooling's backward then reads those instead of keeping ``x``.
            inplace: for a caller that owns ``x`` (a residual block its branch): write z into
                ``x`` wherever no gradient needs ``x`` as it was, i.e. unless autograd records
                this call (grad mode on, and ``x`` or a parameter of the block requiring grad).
                The fusion then costs one pass over ``x`` and no new tensor.

        Returns z: a new tensor, and ``x`` is never written, unless ``inplace`` says otherwise.
        A forward hook sees every call; after an in-place call its input is the output, as for
        ``nn.ReLU(inplace=True)``, so a hook that reads the block's input is a forward pre-hook.
        """
        check_feature_map(x, self.in_channels, "ContextBlock")
        inplace = inplace and not torch.jit.is_scripting() and not self._records_gradient(x)
        return self.fuse(x, self.spatial_pool(x, source), inplace)

    def forward_from_source(self, source: AffineSource) -> Optional[torch.Tensor]:
        """z of :meth:`forward` for the x that ``source`` describes (x = scale * P h + shift: a
        1x1 conv with no norm after it, or a fixed one), computed from h at inference, where x
        does not exist yet: the context from h (:meth:`pool_from_source`, a quarter of the
        bytes in a bottleneck), then x = P h with the fusion of Eq. 4 in its weights and bias
        for one image (x * m + t = (m * scale * P) h + (m * shift + t)), or written into x in
        place for a batch. None where it does not apply: in training, where autograd records,
        under TorchScript, and when ``fuse_into_producer`` is off; the caller then computes x
        and calls :meth:`forward`."""
        if not self.fuse_into_producer or self.training or torch.is_grad_enabled() or torch.jit.is_scripting():
            return None
        features, projection, scale, shift = source
        context = self.pool_from_source(source)
        projection = projection.reshape(projection.shape[0], -1)
        if features.shape[0] > 1 or torch.jit.is_tracing() or torch.compiler.is_compiling():  # terms per image
            x = F.conv2d(features, (projection * scale[:, None])[:, :, None, None], shift)
            return self.fuse(x, context, inplace=True)
        factor, term = self.fusion_terms(context)
        weight, bias = projection * scale[:, None], shift
        if factor is not None:
            weight, bias = weight * factor.reshape(-1, 1), bias * factor.flatten()
        return F.conv2d(features, weight[:, :, None, None], bias if term is None else bias + term.flatten())

    @torch.jit.unused
    def _records_gradient(self, x: torch.Tensor) -> bool:
        """Whether autograd records a call on ``x``: then a gradient may need ``x`` as it is."""
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, ratio={self.ratio}, "
            f"pooling_type={self.pooling_type!r}, fusion_types={self.fusion_types}, "
            f"transform={self.transform!r}"
        )
