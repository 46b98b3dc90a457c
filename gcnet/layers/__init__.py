"""The paper's block family as plain PyTorch modules (no detectron2 needed)."""
from .attention_pool import AffineSource, attention_pool, conv_attention_pool
from .context_block import ContextBlock
from .non_local import NON_LOCAL_MODES, NonLocalBlock, SimplifiedNonLocalBlock

__all__ = [
    "AffineSource",
    "ContextBlock",
    "NonLocalBlock",
    "SimplifiedNonLocalBlock",
    "NON_LOCAL_MODES",
    "attention_pool",
    "conv_attention_pool",
]
