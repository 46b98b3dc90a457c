"""What the attention pooling (:mod:`.attention_pool`) and its Triton kernel
(:mod:`.attention_pool_triton`) agree on, importable without Triton: which inputs the kernel
takes, and that both compute outside autocast.
"""

import contextlib
import os

import torch

__all__ = ["TRITON_DTYPES", "TRITON_MAX_CHANNELS", "TRITON_MAX_POSITIONS", "kernel_takes", "without_autocast"]

# The kernel keeps one fp32 accumulator per channel, padded to a power of two, in registers.
TRITON_MAX_CHANNELS = 4096
# Positions per image the kernel indexes in 32 bits (32768 x 32768); larger maps take PyTorch.
TRITON_MAX_POSITIONS = 2**30
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def kernel_takes(x: torch.Tensor) -> bool:
    """Whether the Triton kernel takes ``x``: a non-empty fp16, bf16 or fp32 (N, C, H, W) tensor
    of at most TRITON_MAX_CHANNELS channels and TRITON_MAX_POSITIONS positions, on CUDA (or on
    any device in Triton's interpreter, ``TRITON_INTERPRET=1``)."""
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return (
        x.dtype in TRITON_DTYPES
        and x.dim() == 4
        and x.numel() > 0
        and x.shape[1] <= TRITON_MAX_CHANNELS
        and x.shape[2] * x.shape[3] <= TRITON_MAX_POSITIONS
    )


def without_autocast(device: torch.device):
    """A context where autocast leaves the dtypes alone, on ``device``'s type."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
