"""Forward hooks on named modules, on for the duration of a ``with`` block."""

import contextlib
from typing import Callable, Dict

import torch
from torch import nn

__all__ = ["ForwardHooks"]


class ForwardHooks:
    """Base of the recorders: ``__enter__`` registers ``self._hook(name)`` on each module of
    ``self.blocks`` (name -> module), ``__exit__`` removes them. The hooks are forward hooks
    (``hook(module, inputs, output)``), or forward pre-hooks (``hook(module, inputs)``, run
    before the module) where ``reads_inputs_only``: a module that may write its output into
    its input (a GC block in a residual block) shows its true input to a pre-hook alone.

    Inside the block, compiled modules (``torch.compile``) run eagerly, so that every hook
    sees every call: code compiled before a hook was registered would not call it."""

    blocks: Dict[str, nn.Module]
    reads_inputs_only = False

    def _hook(self, name: str) -> Callable:
        raise NotImplementedError

    def __enter__(self):
        register = "register_forward_pre_hook" if self.reads_inputs_only else "register_forward_hook"
        self._handles = [getattr(block, register)(self._hook(name)) for name, block in self.blocks.items()]
        self._stance = contextlib.ExitStack()
        self._stance.enter_context(torch.compiler.set_stance("force_eager"))
        return self

    def __exit__(self, *exc) -> None:
        self._stance.close()
        for handle in self._handles:
            handle.remove()
        self._handles = []
