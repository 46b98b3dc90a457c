"""The non-local block (Eq. 1 of the paper) and its simplified form (Eq. 2/3).

The four instantiations of the pairwise weights omega_ij follow the non-local networks paper
(Wang et al., 2018), as Section 3.1 lists them:

* "gaussian":           omega_ij = softmax_j(<x_i, x_j>)
* "embedded_gaussian":  omega_ij = softmax_j(<W_q x_i, W_k x_j>)
* "dot_product":        omega_ij = <W_q x_i, W_k x_j> / N_p
* "concat":             omega_ij = ReLU(w_f^T [W_q x_i, W_k x_j]) / N_p
"""

from typing import Callable, Optional

import torch
from torch import nn

from .context_block import ContextBlock, check_feature_map

__all__ = ["NonLocalBlock", "SimplifiedNonLocalBlock", "NON_LOCAL_MODES"]

NON_LOCAL_MODES = ("gaussian", "embedded_gaussian", "dot_product", "concat")


class NonLocalBlock(nn.Module):
    """Non-local block, Eq. 1: z_i = x_i + W_z sum_j omega_ij (W_v x_j).

    Args:
        in_channels: C, the channels of the input and output.
        mode: the pairwise function, one of :data:`NON_LOCAL_MODES`.
        reduction: W_v, W_q and W_k map C to C // reduction channels (2 in the NL paper).
        use_scale: divide the embedded-Gaussian logits by sqrt(C // reduction), as scaled
            dot-product attention does. On by default, as in the reference implementations
            (the NL block of the original GCNet code and mmcv); False is Eq. 1 as written.
        norm: optional callable ``channels -> nn.Module`` applied after W_z (the NL paper
            uses BN there for detection).

    Sub-modules: ``g`` (W_v), ``theta`` (W_q), ``phi`` (W_k), ``concat_project`` (w_f),
    ``conv_out`` (W_z) and ``norm``. ``g``, ``theta`` and ``phi`` start from N(0, 0.01^2);
    the last affine layer of the residual branch (``norm`` if given, else ``conv_out``) starts
    at zero, so a new block is the identity.
    """

    def __init__(
        self,
        in_channels: int,
        mode: str = "embedded_gaussian",
        reduction: int = 2,
        use_scale: bool = True,
        norm: Optional[Callable[[int], nn.Module]] = None,
    ):
        super().__init__()
        if mode not in NON_LOCAL_MODES:
            raise ValueError(f"NonLocalBlock: mode must be one of {NON_LOCAL_MODES}, got {mode!r}")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"NonLocalBlock: reduction must be a positive int, got {reduction!r}")
        inter_channels = in_channels // reduction
        if inter_channels < 1:
            raise ValueError(
                f"NonLocalBlock: in_channels // reduction must be >= 1, got "
                f"{in_channels} // {reduction} = {inter_channels}"
            )
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.mode = mode
        self.use_scale = use_scale

        self.g = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
        if mode == "gaussian":
            self.theta: Optional[nn.Conv2d] = None
            self.phi: Optional[nn.Conv2d] = None
        else:
            self.theta = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
            self.phi = nn.Conv2d(in_channels, inter_channels, kernel_size=1)
        self.concat_project: Optional[nn.Conv2d] = (
            nn.Conv2d(2 * inter_channels, 1, kernel_size=1, bias=False) if mode == "concat" else None
        )
        self.conv_out = nn.Conv2d(inter_channels, in_channels, kernel_size=1)
        self.norm: Optional[nn.Module] = norm(in_channels) if norm is not None else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.g, self.theta, self.phi):
            if conv is not None:
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)
        if self.concat_project is not None:
            nn.init.normal_(self.concat_project.weight, std=0.01)
        if self.norm is not None:
            nn.init.zeros_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)
        else:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def pairwise_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pairwise scores before normalisation, as an (N, H*W, H*W) matrix whose row i
        belongs to query position i (the "prod" of Fig. 3 and Table 3): <x_i, x_j>
        (gaussian), <W_q x_i, W_k x_j> (embedded gaussian, divided by sqrt(C') with
        ``use_scale``; dot product), w_f^T [W_q x_i, W_k x_j] (concat)."""
        n, c, h, w = x.shape
        if self.theta is None or self.phi is None:  # gaussian: the raw features
            flat = x.reshape(n, c, h * w)
            return torch.bmm(flat.transpose(1, 2), flat)
        query = self.theta(x).reshape(n, self.inter_channels, h * w)
        key = self.phi(x).reshape(n, self.inter_channels, h * w)
        if self.concat_project is not None:
            # w_f^T [q_i, k_j] = w_q . q_i + w_k . k_j, summed by broadcasting.
            w_f = self.concat_project.weight.reshape(2, self.inter_channels)
            score_q = torch.matmul(w_f[0], query)  # (N, HW)
            score_k = torch.matmul(w_f[1], key)
            return score_q[:, :, None] + score_k[:, None, :]
        logits = torch.bmm(query.transpose(1, 2), key)
        if self.use_scale and self.mode == "embedded_gaussian":
            logits = logits / self.inter_channels**0.5
        return logits

    def pairwise_weights(self, x: torch.Tensor) -> torch.Tensor:
        """omega of Eq. 1 as an (N, H*W, H*W) matrix; row i is query position i's attention map."""
        return self.normalize_pairwise(self.pairwise_logits(x))

    def normalize_pairwise(self, logits: torch.Tensor) -> torch.Tensor:
        """omega from the scores of :meth:`pairwise_logits`: the mode's normalisation (softmax
        over j for the Gaussians, 1/N_p for dot product and concat, after a ReLU for concat)."""
        num_positions = logits.shape[-1]
        if self.mode in ("gaussian", "embedded_gaussian"):
            return logits.softmax(dim=-1)
        if self.mode == "dot_product":
            return logits / num_positions
        return torch.relu(logits) / num_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.in_channels, "NonLocalBlock")
        n, _, h, w = x.shape
        value = self.g(x).reshape(n, self.inter_channels, h * w)
        # y_i = sum_j omega_ij v_j, as (N, C', HW) = v @ omega^T.
        y = torch.bmm(value, self.pairwise_weights(x).transpose(1, 2))
        y = self.conv_out(y.reshape(n, self.inter_channels, h, w))
        if self.norm is not None:
            y = self.norm(y)
        return x + y

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, inter_channels={self.inter_channels}, use_scale={self.use_scale}"


class SimplifiedNonLocalBlock(ContextBlock):
    """Simplified non-local (SNL) block, Eq. 2, computed in the order of Eq. 3:

        z_i = x_i + W_v sum_j softmax_j(W_k x_j) x_j.

    The attention map is query-independent, so W_v moves out of the sum and costs O(C^2)
    instead of O(HWC^2). This is the global context framework (Eq. 4) with attention
    pooling, a one-conv transform and additive fusion, i.e. a :class:`ContextBlock` with
    ``transform="linear"``: ``conv_mask`` is W_k and ``channel_add_conv[0]`` is W_v.
    """

    def __init__(self, in_channels: int):
        super().__init__(
            in_channels,
            ratio=1.0,
            pooling_type="att",
            fusion_types=("channel_add",),
            transform="linear",
        )
