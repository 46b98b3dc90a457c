"""The paper's block family as plain PyTorch modules (no detectron2 needed)."""
from .attention_pool import AffineSource, attention_pool, conv_attention_pool
from .context_block import ContextBlock
from .create_context import CONTEXT_TYPES, ContextSpec, context_options, context_spec, create_context
from .non_local import NON_LOCAL_MODES, NonLocalBlock, SimplifiedNonLocalBlock

__all__ = [
    "AffineSource",
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
]
