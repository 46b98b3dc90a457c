"""The paper's block family as plain PyTorch modules (no detectron2 needed)."""
from .context_block import ContextBlock, attention_pool
from .non_local import NON_LOCAL_MODES, NonLocalBlock, SimplifiedNonLocalBlock

__all__ = [
    "ContextBlock",
    "NonLocalBlock",
    "SimplifiedNonLocalBlock",
    "NON_LOCAL_MODES",
    "attention_pool",
]
