"""Attention pooling in one pass over ``x``: a Triton kernel for CUDA tensors.

Eq. 5's context sum_j softmax_j(W_k x_j + b) x_j needs the logits of all positions before the
softmax, so computed as written it reads ``x`` twice (once for the logits, once for the
weighted sum). The kernel reads it once, with the online softmax of flash-decoding: each
program takes one image and a contiguous range of positions, loads a (C, BLOCK_P) tile of
``x`` at a time, computes the tile's logits from it and, from the same registers, rescales its
running context by exp(m_old - m_new) and adds the tile's exp-weighted sum. A few hundred
(N, C) partial results are then merged in fp32 by PyTorch, outside autocast.

Accumulation is in fp32 for fp16, bf16 and fp32 inputs. ``x`` is read in place through its
four strides, so contiguous, ``channels_last``, sliced (storage offsets, any strides) and
expanded (zero strides) inputs need no copy; offsets inside an image are 64-bit. The kernel is
compiled once per dtype, channel tile and layout class (contiguous rows aligned to 16
elements or not): image sizes and grid geometry are runtime arguments
(``tools/triton_kernel_report.py`` compiles it for GPU targets and reports its registers).

With ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors in Triton's interpreter, which is
how the test suite checks it against the definition on a machine without a GPU. This module
imports Triton: :func:`.attention_pool.triton_supports` says when to import it, and
:mod:`.kernel_inputs` which inputs the kernel takes.
"""

import contextlib
from typing import Any, NamedTuple, Optional, Tuple

import torch
import triton
import triton.language as tl

from .kernel_inputs import kernel_takes, without_autocast

__all__ = ["KernelLaunch", "plan_launch", "triton_attention_pool"]

# Elements of x per program and step: the (C, BLOCK_P) tile lives in registers, 16 per thread
# (num_warps follows the tile). 8192 elements over 16 warps keep every c2-c5 and D8 shape
# within 128 registers and free of spills on sm_80 and sm_90, in both layouts, with rows
# aligned to 16 elements or not (tools/README.md).
_TILE_ELEMENTS = 8192
_ELEMENTS_PER_THREAD = 16
# Positions per tile at most: 64 contiguous fp32 values (256 bytes) per channel row.
_MAX_BLOCK_P = 64
# Programs per streaming multiprocessor to aim for when splitting the positions.
_PROGRAMS_PER_SM = 4


@triton.jit(do_not_specialize=["positions", "width", "tiles_per_split", "num_splits", "stride_h"])
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
    width,
    tiles_per_split,
    num_splits,
    stride_n,
    stride_c,
    stride_h,
    stride_w,
    HAS_BIAS: tl.constexpr,
    FLAT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # Program (image, split): the attention logits W_k x_j + b of the split's positions, and the
    # running max, sum of exp and exp-weighted sum of x_j over them (Eq. 5, online softmax).
    image = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    start = split * tiles_per_split * BLOCK_P
    end = tl.minimum(start + tiles_per_split * BLOCK_P, positions)

    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < channels
    w_k = tl.load(weight_ptr + offs_c, mask=mask_c, other=0.0)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr)
    # 64-bit offsets: an image may span more than 2**31 elements.
    rows = x_ptr + image * stride_n + offs_c.to(tl.int64) * stride_c

    running_max = -float("inf")
    running_sum = 0.0
    context = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(start, end, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        mask_p = offs_p < end
        if FLAT:  # H and W flatten into one position index of stride stride_w
            offs_x = offs_p.to(tl.int64) * stride_w
        else:
            offs_x = (offs_p // width).to(tl.int64) * stride_h + (offs_p % width).to(tl.int64) * stride_w
        tile = tl.load(rows[:, None] + offs_x[None, :], mask=mask_c[:, None] & mask_p[None, :], other=0.0)
        tile = tile.to(tl.float32)
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


class KernelLaunch(NamedTuple):
    """One launch of the kernel: ``kernel[grid](*args, **options)``, ``kernel`` the Triton
    function (:func:`_partial_pool_kernel`); the outputs are the fp32 buffers among ``args``
    that :func:`triton_attention_pool` merges."""

    kernel: Any
    grid: Tuple[int, int]
    args: tuple
    options: dict

    @property
    def outputs(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (N, HW), split maxima (N, S), split sums (N, S), split contexts (N, S, C))."""
        return self.args[3:7]


def _tile_shape(channels: int) -> Tuple[int, int]:
    """(BLOCK_C, BLOCK_P): all channels, padded to a power of two, and as many positions as
    fit _TILE_ELEMENTS (at least 1, at most _MAX_BLOCK_P)."""
    block_c = triton.next_power_of_2(channels)
    return block_c, max(1, min(_MAX_BLOCK_P, _TILE_ELEMENTS // block_c))


def _split_positions(x: torch.Tensor, block_p: int) -> Tuple[int, int]:
    """(tiles per split, number of splits): enough programs to fill the device, each with a
    non-empty range of whole tiles."""
    n, positions = x.shape[0], x.shape[2] * x.shape[3]
    if x.is_cuda:
        target = _PROGRAMS_PER_SM * torch.cuda.get_device_properties(x.device).multi_processor_count
    else:  # the interpreter: a few splits, so that the merge is exercised
        target = 4 * n
    tiles = triton.cdiv(positions, block_p)
    tiles_per_split = triton.cdiv(tiles, max(1, min(tiles, triton.cdiv(target, n))))
    return tiles_per_split, triton.cdiv(tiles, tiles_per_split)


def plan_launch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> KernelLaunch:
    """The kernel's launch for ``x`` (an input the kernel takes, :func:`.kernel_takes`), with
    its output buffers allocated on ``x.device``. Tile shape and ``num_warps`` follow C by
    rule; H, W, N and the strides are runtime values, so they add no compiled variants."""
    n, c, h, w = x.shape
    block_c, block_p = _tile_shape(c)
    tiles_per_split, splits = _split_positions(x, block_p)
    f32 = dict(device=x.device, dtype=torch.float32)
    outputs = (
        torch.empty(n, h * w, **f32),
        torch.empty(n, splits, **f32),
        torch.empty(n, splits, **f32),
        torch.empty(n, splits, c, **f32),
    )
    # W_k and b in fp32 whatever the model's dtype: one compiled variant per dtype of x.
    weight = weight.detach().reshape(c).to(torch.float32).contiguous()
    bias_or_placeholder = weight if bias is None else bias.detach().reshape(1).to(torch.float32)
    stride_h, stride_w = x.stride()[2:]
    args = (x.detach(), weight, bias_or_placeholder, *outputs, c, h * w, w, tiles_per_split, splits, *x.stride())
    options = dict(
        HAS_BIAS=bias is not None,
        FLAT=h == 1 or stride_h == w * stride_w,
        BLOCK_C=block_c,
        BLOCK_P=block_p,
        num_warps=max(1, block_c * block_p // (32 * _ELEMENTS_PER_THREAD)),
    )
    return KernelLaunch(_partial_pool_kernel, (n, splits), args, options)


def on_device(device: torch.device):
    """A guard that makes ``device`` current: Triton launches on the current CUDA device and
    its current stream, whatever the device of its arguments."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def triton_attention_pool(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5's attention pooling with the 1x1 conv W_k in one pass over ``x``.

    Args:
        x: (N, C, H, W) fp16, bf16 or fp32, non-empty, in any memory layout.
        weight: (1, C, 1, 1) W_k; bias: (1,) or None.

    Returns:
        (context (N, C) in fp32, softmax weights (N, H*W) in fp32).
    """
    if not kernel_takes(x):
        raise ValueError(f"triton_attention_pool: unsupported input {tuple(x.shape)} {x.dtype} on {x.device}")
    launch = plan_launch(x, weight, bias)
    with on_device(x.device):
        launch.kernel[launch.grid](*launch.args, **launch.options)
    logits, split_max, split_sum, split_context = launch.outputs
    # Merge the splits: each holds sum_j exp(l_j - m_s) x_j and sum_j exp(l_j - m_s). The
    # partial sums exceed fp16's range at real sizes: fp32 whatever autocast would choose.
    with without_autocast(x.device):
        image_max = split_max.amax(dim=1, keepdim=True)
        rescale = torch.exp(split_max - image_max)
        total = (split_sum * rescale).sum(dim=1, keepdim=True)
        context = torch.bmm(rescale.unsqueeze(1), split_context).squeeze(1) / total
        return context, torch.exp(logits - image_max) / total
