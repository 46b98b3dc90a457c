"""Forward hooks on named modules, on for the duration of a ``with`` block."""
from typing import Callable, Dict

from torch import nn

__all__ = ["ForwardHooks"]


class ForwardHooks:
    """Base of the recorders: ``__enter__`` registers ``self._hook(name)`` as a forward hook on
    each module of ``self.blocks`` (name -> module), ``__exit__`` removes them."""

    blocks: Dict[str, nn.Module]

    def _hook(self, name: str) -> Callable:
        raise NotImplementedError

    def __enter__(self):
        self._handles = [block.register_forward_hook(self._hook(name)) for name, block in self.blocks.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
