"""The paper's block family as plain PyTorch modules (no detectron2 needed)."""

from .attention_pool import AffineSource, attention_pool, conv_attention_pool
from .context_block import ContextBlock
from .create_context import CONTEXT_TYPES, ContextSpec, context_options, context_spec, create_context
from .fold_norm import BATCH_NORMS, fixed_norm_affine, fold_affine_into_conv, fold_norm_into_conv
from .non_local import NON_LOCAL_MODES, NonLocalBlock, SimplifiedNonLocalBlock

__all__ = [
    "AffineSource",
    "BATCH_NORMS",
    "CONTEXT_TYPES",
    "ContextBlock",
    "ContextSpec",
    "NonLocalBlock",
    "SimplifiedNonLocalBlock",
    "NON_LOCAL_MODES",
    "attention_pool",
    "context_options",
    "context_spec",
    "conv_attention_pool",
    "create_context",
    "fixed_norm_affine",
    "fold_affine_into_conv",
    "fold_norm_into_conv",
]
