"""The context modules by name: the one kind of slot that a residual block (Table 5(b)), the
extra block between two residual blocks (Table 5(a)) and the segmentation head (Table 12(a))
fill, in the manner of timm's ``create_attn``.

A slot takes a :data:`ContextSpec`: a kind of :data:`CONTEXT_TYPES`, None, or a callable
channels -> module. gcnet's configs give a slot its kind (``context="gc"``) and each kind its
options under the kind's name (``gc=dict(ratio=1 / 4)``, ``nl=dict(mode="gaussian")``), so that
changing the kind is one key; :func:`context_spec` binds the slot's kind to its options.
"""

import functools
import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Union

from torch import nn

from .context_block import ContextBlock
from .non_local import NonLocalBlock, SimplifiedNonLocalBlock

__all__ = ["CONTEXT_TYPES", "ContextSpec", "context_options", "context_spec", "create_context"]

_CONTEXT_MODULES = {"gc": ContextBlock, "nl": NonLocalBlock, "snl": SimplifiedNonLocalBlock}
# No module ("none", or None), the GC block (Eq. 5), the non-local block (Eq. 1), the
# simplified non-local block (Eq. 2/3).
CONTEXT_TYPES = ("none", *_CONTEXT_MODULES)
# What a context slot takes: a name of CONTEXT_TYPES, None, or a callable channels -> module.
ContextSpec = Union[None, str, Callable[..., Optional[nn.Module]]]


def _context_module(kind: Optional[str], key: str = "context") -> Optional[type]:
    """The module class that ``kind`` names, None for None or "none"; otherwise a ValueError
    naming ``key`` (the argument or config key that holds ``kind``) and the allowed values."""
    if kind is not None and kind not in CONTEXT_TYPES:
        raise ValueError(f"{key} must be one of {CONTEXT_TYPES}, got {kind!r}")
    return _CONTEXT_MODULES.get(kind)


def context_options(kind: str, **given: Any) -> Dict[str, Any]:
    """The options of the context module ``kind``: the keyword arguments of its constructor
    that have a value by default (the NL block's module-valued ``norm``, None by default, is
    not one), with ``given`` over them. These signatures are where every default of the GC and
    NL blocks in gcnet's configs comes from. An unknown kind or key raises a ValueError."""
    module = _context_module(kind)
    parameters = list(inspect.signature(module).parameters.values())[1:] if module else []  # after the channels
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty and p.default is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{kind} has unknown keys {unknown}; allowed: {sorted(defaults)}")
    return dict(defaults, **given)


def create_context(kind: ContextSpec, channels: int, *, key: str = "context", **options: Any) -> Optional[nn.Module]:
    """The context module on ``channels`` channels that ``kind`` names: "gc", "nl" or "snl"
    (with :func:`context_options` ``(kind, **options)``), None or "none" (no module), or a
    callable that takes the channels and ``options`` (a module class or a ``functools.partial``
    of this function), as detectron2's ``get_norm`` takes a name or a callable. The kind and
    the options' names are checked here (an unknown kind raises a ValueError naming ``key``,
    the slot that holds it), their values by the module."""
    if callable(kind):
        return kind(channels, **options)
    module = _context_module(kind, key)
    return None if module is None else module(channels, **context_options(kind, **options))


def context_spec(kind: ContextSpec, **options_by_kind: Optional[Mapping[str, Any]]) -> ContextSpec:
    """The spec of a slot of kind ``kind``, given the options of each kind by its name: the
    options of ``kind`` bound to it (``context_spec("gc", gc={"ratio": 0.25}, nl=...)`` is
    ``functools.partial(create_context, "gc", ratio=0.25)``), ``kind`` itself where it has none
    (None, "snl", a callable). Nothing is checked until the module is created."""
    options = options_by_kind.get(kind) if isinstance(kind, str) else None
    return functools.partial(create_context, kind, **options) if options else kind
