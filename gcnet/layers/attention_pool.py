"""Global attention pooling, the context modeling of Eq. 5: sum_j softmax_j(W_k x_j + b) x_j.

:func:`attention_pool` is the definition, as one batched matrix product over the flattened
positions (the reference implementation's formulation). :func:`conv_attention_pool` computes
the same from ``x`` and the 1x1 conv W_k, choosing its path automatically:

* in ``torch.compile`` and ``torch.export``: the reference formulation, which the compiler
  fuses; also when tracing for TorchScript, which cannot hold a custom autograd function;
* otherwise a custom autograd function that never copies ``x``. Its forward is, on CUDA with
  Triton, the one-pass kernel of :mod:`.attention_pool_triton` (fp16, bf16 and fp32 inputs;
  ``GCNET_DISABLE_TRITON=1`` turns it off, and a kernel that fails to import, compile or
  launch warns once and is not tried again); elsewhere it reads ``x`` in its own memory
  layout (contiguous or ``channels_last``) through views and computes the logits and the
  weighted sum as matrix-vector products (one per image on the CPU, where BLAS gemv is an
  order of magnitude faster than a batched product with one column). Its backward writes the
  gradient of ``x`` in one rank-2 update, g p^T + w dlogit^T, instead of the several full-size
  intermediates autograd makes of the reference; given an :class:`AffineSource` (``x`` made
  from narrower features by a linear projection and a per-channel affine map), it reads those
  features instead of keeping ``x`` alive for the backward.

Both directions run outside autocast: the softmax weights, the context and every reduction
over positions stay in fp32 (fp64 for fp64 inputs), and only the products that read ``x``
(or write its gradient) run in ``x``'s dtype. All paths agree to float32 rounding, outputs and
gradients, and in fp16 and bf16 are as accurate as the definition (``tests/layers``).
"""

import functools
import importlib.util
import os
import warnings
from typing import NamedTuple, Optional, Tuple

import torch

from .kernel_inputs import TRITON_MAX_CHANNELS, TRITON_MAX_POSITIONS, kernel_takes, without_autocast

__all__ = [
    "AffineSource",
    "DISABLE_TRITON_ENV",
    "TRITON_MAX_CHANNELS",
    "TRITON_MAX_POSITIONS",
    "attention_pool",
    "conv_attention_pool",
    "triton_supports",
]

# Set to 1 to pool with PyTorch on CUDA too, without importing Triton.
DISABLE_TRITON_ENV = "GCNET_DISABLE_TRITON"

# Why the Triton kernel was given up in this process, after its first failure.
_triton_failure: Optional[str] = None


def attention_pool(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_j softmax_j(logits_j) x_j with the softmax over all H*W positions.

    Args:
        x: (N, C, H, W) features.
        logits: (N, 1, H, W) attention logits W_k x.

    Returns:
        (N, C, 1, 1) global context.
    """
    n, c, h, w = x.shape
    weights = logits.reshape(n, h * w, 1).to(_accumulation_dtype(x)).softmax(dim=1).to(x.dtype)
    return torch.bmm(x.reshape(n, c, h * w), weights).reshape(n, c, 1, 1)


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_enabled() -> bool:
    return os.environ.get(DISABLE_TRITON_ENV, "0") in ("", "0") and _triton_failure is None


def triton_supports(x: torch.Tensor) -> bool:
    """Whether the forward pools ``x`` with the Triton kernel of :mod:`.attention_pool_triton`:
    where the kernel takes ``x`` (:func:`.kernel_inputs.kernel_takes`: a non-empty fp16, bf16 or
    fp32 (N, C, H, W) tensor of at most TRITON_MAX_CHANNELS channels and TRITON_MAX_POSITIONS
    positions, on CUDA or in Triton's interpreter), with Triton installed and neither turned
    off (``GCNET_DISABLE_TRITON=1``) nor failed. Triton is imported only then: it adds about
    70 ms to start-up, which CPU runs need not pay."""
    return kernel_takes(x) and _triton_enabled() and _triton_installed()


def _give_up_triton(error: Exception) -> None:
    """Warn, once, that the kernel failed and that the PyTorch path takes over."""
    global _triton_failure
    message = str(error).strip()
    _triton_failure = f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__
    warnings.warn(
        f"gcnet: the Triton attention-pooling kernel failed ({_triton_failure}); attention pooling "
        f"uses PyTorch from now on. Set {DISABLE_TRITON_ENV}=1 to choose PyTorch from the start.",
        RuntimeWarning,
        stacklevel=2,
    )


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """The softmax and the reductions over positions run in at least fp32, so that
    low-precision inputs keep a normalised distribution and sums of thousands of terms."""
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


def _batched_products(t: torch.Tensor) -> bool:
    """Batched matrix products on accelerators; per-image BLAS calls on the CPU."""
    return t.device.type != "cpu"


def _matvec(matrices: torch.Tensor, vectors: torch.Tensor, transpose: bool) -> torch.Tensor:
    """(N, R, K) @ (N, K) -> (N, R), or with ``transpose`` (N, R, K)^T @ (N, R) -> (N, K):
    products in the matrices' dtype, the result in the vectors' dtype."""
    vectors_in = vectors.to(matrices.dtype)
    if _batched_products(matrices):
        if transpose:
            out = torch.bmm(vectors_in.unsqueeze(1), matrices).squeeze(1)
        else:
            out = torch.bmm(matrices, vectors_in.unsqueeze(2)).squeeze(2)
        return out.to(vectors.dtype)
    n, r, k = matrices.shape
    out = matrices.new_empty(n, k if transpose else r)
    for m, v, o in zip(matrices, vectors_in, out):
        torch.mv(m.t() if transpose else m, v, out=o)
    return out.to(vectors.dtype)


def _rank2_update(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> None:
    """out[i] = a[i] b[i]^T + c[i] d[i]^T for (N, R, K) ``out`` and (N, R) / (N, K) vectors in
    its dtype: BLAS ger per image on the CPU (twice as fast there as a batched product of
    depth 2), one batched product elsewhere."""
    if _batched_products(out):
        torch.bmm(torch.stack([a, c], dim=2), torch.stack([b, d], dim=1), out=out)
        return
    for out_i, a_i, b_i, c_i, d_i in zip(out, a, b, c, d):
        torch.outer(a_i, b_i, out=out_i).addr_(c_i, d_i)


def _pool_with_pytorch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):
    """(context (N, C), softmax weights (N, H*W)) in the accumulation dtype, from two
    matrix-vector products over ``x`` in its own layout."""
    n, c = x.shape[:2]
    matrices, positions_major = _as_matrices(x)
    w_k = weight.reshape(1, c).expand(n, c).to(_accumulation_dtype(x))
    # logits_j = W_k x_j: (N, HW) from (N, HW, C) @ w or (N, C, HW)^T @ w.
    logits = _matvec(matrices, w_k, transpose=not positions_major)
    if bias is not None:
        logits = logits + bias.to(logits.dtype)
    weights = logits.softmax(dim=1)
    return _matvec(matrices, weights, transpose=positions_major), weights


def _pool(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):
    """(context, weights) as :func:`_pool_with_pytorch`, from the Triton kernel where it
    :func:`triton_supports` ``x`` and has not failed."""
    if triton_supports(x):
        try:
            from . import attention_pool_triton

            return attention_pool_triton.triton_attention_pool(x, weight, bias)
        except torch.cuda.OutOfMemoryError:
            raise  # the PyTorch path needs memory too: not the kernel's fault
        except Exception as error:  # an import, compile or launch failure on this GPU/driver
            _give_up_triton(error)
    return _pool_with_pytorch(x, weight, bias)


class AffineSource(NamedTuple):
    """Where the pooled ``x`` comes from, when it is x = scale * (P h) + shift per channel: a
    linear projection ``projection`` P (C, C_in) of ``features`` h (N, C_in, H, W) followed by a
    per-channel affine map (``scale`` and ``shift`` (C,)). The pooling's backward then reads h
    instead of x and saves no copy of x: where h is kept for another backward anyway (the
    input of the 1x1 conv that makes x) and narrower than x, the pooling costs no memory for
    its backward. All four are values (no gradient)."""

    features: torch.Tensor
    projection: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor


class _ConvAttentionPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, source_features, projection, scale, shift):
        n, c, h, w = x.shape
        with without_autocast(x.device):
            context, weights = _pool(x, weight, bias)
        source = (x,) if source_features is None else (source_features, projection, scale, shift)
        ctx.save_for_backward(weight, weights, *source)
        ctx.x_shape, ctx.x_dtype, ctx.x_channels_last = x.shape, x.dtype, _channels_last(x)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return context.to(x.dtype).reshape(n, c, 1, 1)

    @staticmethod
    def backward(ctx, grad_context: torch.Tensor):
        weight, weights, *source = ctx.saved_tensors
        with without_autocast(weights.device):
            return (*_ConvAttentionPool._gradients(ctx, grad_context, weight, weights, source), None, None, None, None)

    @staticmethod
    def _gradients(ctx, grad_context, weight, weights, source):
        """The gradients of x, W_k and b, from the fp32 (or fp64) softmax weights."""
        n, c, h, w = ctx.x_shape
        pooled = _PooledFeatures(*source)
        g = grad_context.reshape(n, c).to(weights.dtype)
        # context = sum_j p_j x_j, p = softmax(l):  dL/dl_j = p_j (g . x_j - sum_k p_k g . x_k).
        dots = pooled.dot(g)
        dlogits = weights * (dots - (weights * dots).sum(dim=1, keepdim=True))
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # dL/dx_j = p_j g + dl_j W_k: one rank-2 update per image, written once into a
            # gradient with the dtype and layout of x.
            dtype = ctx.x_dtype
            layout = torch.channels_last if ctx.x_channels_last else torch.contiguous_format
            grad_x = torch.empty(ctx.x_shape, dtype=dtype, device=g.device, memory_format=layout)
            w_k = weight.reshape(1, c).expand(n, c).to(dtype)
            g_x, p_x, dl_x = g.to(dtype), weights.to(dtype), dlogits.to(dtype)
            if ctx.x_channels_last:  # (HW, C) per image: p g^T + dl W_k^T
                _rank2_update(_as_matrices(grad_x)[0], p_x, g_x, dl_x, w_k)
            else:  # (C, HW) per image: g p^T + W_k dl^T
                _rank2_update(_as_matrices(grad_x)[0], g_x, p_x, w_k, dl_x)
        if ctx.needs_input_grad[1]:
            # dL/dW_k = sum over images and positions of dl_j x_j.
            grad_weight = pooled.weighted_sum(dlogits).sum(dim=0).reshape(weight.shape).to(weight.dtype)
        if ctx.needs_input_grad[2]:  # False for a None bias
            grad_bias = dlogits.sum().reshape(1).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias


class _PooledFeatures:
    """The two reductions of x the pooling's backward needs, read from x itself or from its
    :class:`AffineSource`; vectors and results in the accumulation dtype."""

    def __init__(self, features, projection=None, scale=None, shift=None):
        self.matrices, self.positions_major = _as_matrices(features)
        self.affine = None if projection is None else (projection.reshape(projection.shape[0], -1), scale, shift)

    def dot(self, g: torch.Tensor) -> torch.Tensor:
        """(N, HW): g_n . x_j for every image n and position j."""
        if self.affine is None:
            return _matvec(self.matrices, g, transpose=not self.positions_major)
        projection, scale, shift = (t.to(g.dtype) for t in self.affine)
        # g . (a * P h + b) = (P^T (a * g)) . h + g . b
        v = (g * scale) @ projection
        return _matvec(self.matrices, v, transpose=not self.positions_major) + (g @ shift).unsqueeze(1)

    def weighted_sum(self, d: torch.Tensor) -> torch.Tensor:
        """(N, C): sum_j d_j x_j for every image."""
        hd = _matvec(self.matrices, d, transpose=self.positions_major)
        if self.affine is None:
            return hd
        projection, scale, shift = (t.to(d.dtype) for t in self.affine)  # sum_j d_j (a * P h_j + b)
        return (hd @ projection.t()) * scale + d.sum(dim=1, keepdim=True) * shift


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
