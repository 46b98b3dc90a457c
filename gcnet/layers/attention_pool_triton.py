"""Attention pooling in one pass over ``x``: a Triton kernel for CUDA tensors.

Eq. 5's context sum_j softmax_j(W_k x_j + b) x_j needs the logits of all positions before the
softmax, so computed as written it reads ``x`` twice (once for the logits, once for the
weighted sum). The kernel reads it once, with the online softmax of flash-decoding: each
program takes one image and a contiguous range of positions, loads a (C, BLOCK_P) tile of
``x`` at a time, computes the tile's logits from it and, from the same registers, rescales its
running context by exp(m_old - m_new) and adds the tile's exp-weighted sum. A few hundred
(N, C) partial results are then merged in PyTorch. Accumulation is in fp32 for every input
dtype; ``x`` is read through its strides, so contiguous and ``channels_last`` inputs are
both read in place.

With ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors in Triton's interpreter, which is
how the test suite checks it against the definition on a machine without a GPU. This module
imports Triton: :func:`.attention_pool.triton_supports` says when to import it.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .attention_pool import triton_supports

__all__ = ["triton_attention_pool"]

# Elements of x per program and step: the (C, BLOCK_P) tile lives in registers.
_TILE_ELEMENTS = 16384
# Programs per streaming multiprocessor to aim for when splitting the positions.
_PROGRAMS_PER_SM = 4


@triton.jit
def _partial_pool_kernel(
    x_ptr,
    weight_ptr,
    bias_ptr,
    logits_ptr,
    split_max_ptr,
    split_sum_ptr,
    split_context_ptr,
    channels,
    positions,
    positions_per_split,
    num_splits,
    stride_n,
    stride_c,
    stride_p,
    HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    image = tl.program_id(0)
    split = tl.program_id(1)
    start = split * positions_per_split
    end = tl.minimum(start + positions_per_split, positions)

    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < channels
    w_k = tl.load(weight_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr).to(tl.float32)
    x_image = x_ptr + image.to(tl.int64) * stride_n

    running_max = -float("inf")
    running_sum = 0.0
    context = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(start, end, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask_p = offs_p < end
        tile = tl.load(
            x_image + offs_c[:, None] * stride_c + offs_p[None, :] * stride_p,
            mask=mask_c[:, None] & mask_p[None, :],
            other=0.0,
        ).to(tl.float32)
        logits = tl.sum(tile * w_k[:, None], axis=0) + bias
        logits = tl.where(mask_p, logits, -float("inf"))
        tl.store(logits_ptr + image * positions + offs_p, logits, mask=mask_p)

        new_max = tl.maximum(running_max, tl.max(logits, axis=0))
        rescale = tl.exp(running_max - new_max)
        probs = tl.exp(logits - new_max)
        context = context * rescale + tl.sum(tile * probs[None, :], axis=1)
        running_sum = running_sum * rescale + tl.sum(probs, axis=0)
        running_max = new_max

    split_index = image * num_splits + split
    tl.store(split_max_ptr + split_index, running_max)
    tl.store(split_sum_ptr + split_index, running_sum)
    tl.store(split_context_ptr + split_index * channels + offs_c, context, mask=mask_c)


def _launch_geometry(x: torch.Tensor, block_p: int) -> Tuple[int, int]:
    """(positions per split, number of splits): enough programs to fill the device, each
    with a non-empty range of whole tiles."""
    n, positions = x.shape[0], x.shape[2] * x.shape[3]
    if x.is_cuda:
        target = _PROGRAMS_PER_SM * torch.cuda.get_device_properties(x.device).multi_processor_count
    else:  # the interpreter: a few splits, so that the merge is exercised
        target = 4 * n
    tiles = triton.cdiv(positions, block_p)
    splits = max(1, min(tiles, triton.cdiv(target, n)))
    positions_per_split = triton.cdiv(tiles, splits) * block_p
    return positions_per_split, triton.cdiv(positions, positions_per_split)


def triton_attention_pool(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5's attention pooling with the 1x1 conv W_k in one pass over ``x``.

    Args:
        x: (N, C, H, W), contiguous or ``channels_last`` (any strides that flatten H, W).
        weight: (1, C, 1, 1) W_k; bias: (1,) or None.

    Returns:
        (context (N, C) in fp32, softmax weights (N, H*W) in fp32).
    """
    if not triton_supports(x):
        raise ValueError(f"triton_attention_pool: unsupported input {tuple(x.shape)} {x.dtype} on {x.device}")
    n, c, h, w = x.shape
    if x.stride(2) != w * x.stride(3):  # H and W must flatten into one position index
        x = x.contiguous()
    block_c = triton.next_power_of_2(c)
    block_p = max(1, min(64, _TILE_ELEMENTS // block_c))
    positions_per_split, splits = _launch_geometry(x, block_p)

    f32 = dict(device=x.device, dtype=torch.float32)
    logits = torch.empty(n, h * w, **f32)
    split_max = torch.empty(n, splits, **f32)
    split_sum = torch.empty(n, splits, **f32)
    split_context = torch.empty(n, splits, c, **f32)
    weight = weight.detach().reshape(c).contiguous()
    _partial_pool_kernel[(n, splits)](
        x.detach(),
        weight,
        bias.detach() if bias is not None else weight,  # a placeholder pointer without bias
        logits,
        split_max,
        split_sum,
        split_context,
        c,
        h * w,
        positions_per_split,
        splits,
        x.stride(0),
        x.stride(1),
        x.stride(3),
        HAS_BIAS=bias is not None,
        BLOCK_C=block_c,
        BLOCK_P=block_p,
        num_warps=8 if block_c * block_p >= 8192 else 4,
    )
    # Merge the splits: each holds sum_j exp(l_j - m_s) x_j and sum_j exp(l_j - m_s).
    image_max = split_max.amax(dim=1, keepdim=True)
    rescale = torch.exp(split_max - image_max)
    total = (split_sum * rescale).sum(dim=1, keepdim=True)
    context = torch.einsum("nsc,ns->nc", split_context, rescale) / total
    return context, torch.exp(logits - image_max) / total
