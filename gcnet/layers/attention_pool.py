"""Global attention pooling, the context modeling of Eq. 5: sum_j softmax_j(W_k x_j + b) x_j.

:func:`attention_pool` is the definition, as one batched matrix product over the flattened
positions (the reference implementation's formulation). :func:`conv_attention_pool` computes
the same from ``x`` and the 1x1 conv W_k, choosing its path automatically:

* in ``torch.compile`` and ``torch.export``: the reference formulation, which the compiler
  fuses; also when tracing for TorchScript, which cannot hold a custom autograd function;
* otherwise a custom autograd function that never copies ``x``. Its forward is, on CUDA with
  Triton, the one-pass kernel of :mod:`.attention_pool_triton`; elsewhere it reads ``x`` in
  its own memory layout (contiguous or ``channels_last``) through views and computes the
  logits and the weighted sum as matrix-vector products (one per image on the CPU, where BLAS
  gemv is an order of magnitude faster than a batched product with one column). Its backward
  writes the gradient of ``x`` in one rank-2 update, g p^T + w dlogit^T, instead of the
  several full-size intermediates autograd makes of the reference; given an
  :class:`AffineSource` (``x`` made by a 1x1 conv and a frozen norm), it reads the conv's
  input instead of keeping ``x`` alive for the backward.

All paths agree to float32 rounding, outputs and gradients (``tests/layers``).
"""
import functools
import importlib.util
import os
from typing import NamedTuple, Optional, Tuple

import torch

__all__ = ["AffineSource", "attention_pool", "conv_attention_pool", "triton_supports", "TRITON_MAX_CHANNELS"]

# The Triton kernel keeps one fp32 accumulator per channel, padded to a power of two, in registers.
TRITON_MAX_CHANNELS = 4096


def attention_pool(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_j softmax_j(logits_j) x_j with the softmax over all H*W positions.

    Args:
        x: (N, C, H, W) features.
        logits: (N, 1, H, W) attention logits W_k x.

    Returns:
        (N, C, 1, 1) global context.
    """
    n, c, h, w = x.shape
    weights = logits.reshape(n, h * w, 1).to(_softmax_dtype(x)).softmax(dim=1).to(x.dtype)
    return torch.bmm(x.reshape(n, c, h * w), weights).reshape(n, c, 1, 1)


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_supports(x: torch.Tensor) -> bool:
    """Whether the forward pools ``x`` with the Triton kernel of :mod:`.attention_pool_triton`:
    a floating (N, C, H, W) tensor of at most TRITON_MAX_CHANNELS channels, on CUDA (or any
    device in Triton's interpreter, ``TRITON_INTERPRET=1``), with Triton installed. Triton is
    imported only then: it adds about 70 ms to start-up, which CPU runs need not pay."""
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return x.is_floating_point() and x.dim() == 4 and x.shape[1] <= TRITON_MAX_CHANNELS and _triton_installed()


def _softmax_dtype(x: torch.Tensor) -> torch.dtype:
    """The softmax runs in at least fp32, so that low-precision inputs keep a normalised
    distribution."""
    return torch.promote_types(x.dtype, torch.float32)


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _as_matrices(x: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    """``x`` as per-image matrices: (N, H*W, C) for ``channels_last`` (True), else
    (N, C, H*W) (False); views, except for an ``x`` in neither layout, which is copied."""
    n, c, h, w = x.shape
    if _channels_last(x):
        return x.permute(0, 2, 3, 1).reshape(n, h * w, c), True
    return x.reshape(n, c, h * w), False


def _matvec(matrices: torch.Tensor, vectors: torch.Tensor, transpose: bool) -> torch.Tensor:
    """(N, R, K) @ (N, K) -> (N, R), or with ``transpose`` (N, R, K)^T @ (N, R) -> (N, K)."""
    if matrices.is_cuda:
        if transpose:
            return torch.bmm(vectors.unsqueeze(1), matrices).squeeze(1)
        return torch.bmm(matrices, vectors.unsqueeze(2)).squeeze(2)
    return torch.stack([torch.mv(m.t() if transpose else m, v) for m, v in zip(matrices, vectors)])


def _rank2_update(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> None:
    """out[i] = a[i] b[i]^T + c[i] d[i]^T for (N, R, K) ``out`` and (N, R) / (N, K) vectors:
    BLAS ger per image on the CPU (twice as fast there as a batched product of depth 2),
    one batched product on CUDA."""
    if out.is_cuda:
        torch.bmm(torch.stack([a, c], dim=2), torch.stack([b, d], dim=1), out=out)
        return
    for out_i, a_i, b_i, c_i, d_i in zip(out, a, b, c, d):
        torch.outer(a_i, b_i, out=out_i).addr_(c_i, d_i)


class AffineSource(NamedTuple):
    """Where the pooled ``x`` comes from, when it is x = scale * (projection h) + shift per
    channel: a 1x1 conv (``projection`` (C, C_in)) of ``features`` h (N, C_in, H, W) followed
    by a per-channel affine map (a frozen BatchNorm, ``scale`` and ``shift`` (C,)), as at the
    "after1x1" position of a bottleneck. The pooling's backward then reads h, which that conv
    keeps for its own backward anyway and which is 4x narrower, and saves no copy of x: a
    GC-ResNet trains in the memory of its baseline. All four are values (no gradient)."""

    features: torch.Tensor
    projection: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor


class _ConvAttentionPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, source_features, projection, scale, shift):
        n, c, h, w = x.shape
        if triton_supports(x):
            from . import attention_pool_triton

            context, weights = attention_pool_triton.triton_attention_pool(x, weight, bias)
            context, weights = context.to(x.dtype), weights.to(x.dtype)
        else:
            matrices, positions_major = _as_matrices(x)
            w_k = weight.reshape(1, c).expand(n, c).to(x.dtype)
            # logits_j = W_k x_j: (N, HW) from (N, HW, C) @ w or (N, C, HW)^T @ w.
            logits = _matvec(matrices, w_k, transpose=not positions_major).to(_softmax_dtype(x))
            if bias is not None:
                logits = logits + bias.to(logits.dtype)
            weights = logits.softmax(dim=1).to(x.dtype)
            context = _matvec(matrices, weights, transpose=positions_major)  # (N, C)
        source = (x,) if source_features is None else (source_features, projection, scale, shift)
        ctx.save_for_backward(weight, weights, context, *source)
        ctx.x_shape, ctx.x_dtype, ctx.x_channels_last = x.shape, x.dtype, _channels_last(x)
        return context.reshape(n, c, 1, 1)

    @staticmethod
    def backward(ctx, grad_context: torch.Tensor):
        weight, weights, context, *source = ctx.saved_tensors
        n, c, h, w = ctx.x_shape
        pooled = _PooledFeatures(*source)
        g = grad_context.reshape(n, c).to(ctx.x_dtype)
        # context = sum_j p_j x_j, p = softmax(l):  dL/dl_j = p_j (g . x_j - g . context).
        dlogits = weights * (pooled.dot(g) - (g * context).sum(dim=1, keepdim=True))
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # dL/dx_j = p_j g + dl_j W_k: one rank-2 update per image, written once into a
            # gradient with the layout of x.
            w_k = weight.reshape(1, c).expand(n, c).to(ctx.x_dtype)
            layout = torch.channels_last if ctx.x_channels_last else torch.contiguous_format
            grad_x = torch.empty(ctx.x_shape, dtype=ctx.x_dtype, device=g.device, memory_format=layout)
            if ctx.x_channels_last:  # (HW, C) per image: p g^T + dl W_k^T
                _rank2_update(_as_matrices(grad_x)[0], weights, g, dlogits, w_k)
            else:  # (C, HW) per image: g p^T + W_k dl^T
                _rank2_update(_as_matrices(grad_x)[0], g, weights, w_k, dlogits)
        if ctx.needs_input_grad[1]:
            # dL/dW_k = sum over images and positions of dl_j x_j.
            grad_weight = pooled.weighted_sum(dlogits).sum(dim=0).reshape(weight.shape).to(weight.dtype)
        if ctx.needs_input_grad[2]:  # False for a None bias
            grad_bias = dlogits.sum().reshape(1).to(weight.dtype)
        return grad_x, grad_weight, grad_bias, None, None, None, None


class _PooledFeatures:
    """The two reductions of x the pooling's backward needs, read from x itself or from its
    :class:`AffineSource`."""

    def __init__(self, features, projection=None, scale=None, shift=None):
        self.matrices, self.positions_major = _as_matrices(features)
        self.affine = None if projection is None else (projection.reshape(projection.shape[0], -1), scale, shift)

    def dot(self, g: torch.Tensor) -> torch.Tensor:
        """(N, HW): g_n . x_j for every image n and position j."""
        if self.affine is None:
            return _matvec(self.matrices, g, transpose=not self.positions_major)
        projection, scale, shift = self.affine  # g . (a * P h + b) = (P^T (a * g)) . h + g . b
        v = (g * scale.to(g.dtype)) @ projection.to(g.dtype)
        return _matvec(self.matrices, v, transpose=not self.positions_major) + (g @ shift.to(g.dtype)).unsqueeze(1)

    def weighted_sum(self, d: torch.Tensor) -> torch.Tensor:
        """(N, C): sum_j d_j x_j for every image."""
        if self.affine is None:
            return _matvec(self.matrices, d, transpose=self.positions_major)
        projection, scale, shift = self.affine  # sum_j d_j (a * P h_j + b)
        hd = _matvec(self.matrices, d, transpose=self.positions_major)
        return (hd @ projection.t().to(d.dtype)) * scale.to(d.dtype) + d.sum(dim=1, keepdim=True) * shift.to(d.dtype)


def conv_attention_pool(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], source: Optional[AffineSource] = None
) -> torch.Tensor:
    """Attention pooling with the 1x1 conv W_k (``weight`` (1, C, 1, 1), ``bias`` (1,)):
    sum_j softmax_j(W_k x_j + b) x_j as an (N, C, 1, 1) tensor (see the module docstring).
    ``source``, where given, must describe ``x`` exactly; the backward reads it instead of x."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return attention_pool(x, torch.nn.functional.conv2d(x, weight, bias))
    if source is None:
        return _ConvAttentionPool.apply(x, weight, bias, None, None, None, None)
    return _ConvAttentionPool.apply(x, weight, bias, *(t.detach() for t in source))
