"""The context modules by name: the one slot that a residual block (Table 5(b)), the extra
block between two residual blocks (Table 5(a)) and the segmentation head (Table 12(a)) fill,
in the manner of timm's ``create_attn``."""
import inspect
from typing import Any, Callable, Dict, Optional, Union

from torch import nn

from .context_block import ContextBlock
from .non_local import NonLocalBlock, SimplifiedNonLocalBlock

__all__ = ["CONTEXT_TYPES", "ContextSpec", "check_context_type", "context_options", "create_context"]

_CONTEXT_MODULES = {"gc": ContextBlock, "nl": NonLocalBlock, "snl": SimplifiedNonLocalBlock}
# No module ("none", or None), the GC block (Eq. 5), the non-local block (Eq. 1), the
# simplified non-local block (Eq. 2/3).
CONTEXT_TYPES = ("none", *_CONTEXT_MODULES)
# What a context slot takes: a name of CONTEXT_TYPES, None, or a callable channels -> module.
ContextSpec = Union[None, str, Callable[..., Optional[nn.Module]]]


def check_context_type(kind: Optional[str], option: str = "context") -> Optional[str]:
    """``kind`` if it names a context module, None for None or "none"; otherwise a ValueError
    naming ``option`` (the config key that holds it) and the allowed values."""
    if kind is not None and kind not in CONTEXT_TYPES:
        raise ValueError(f"{option} must be one of {CONTEXT_TYPES}, got {kind!r}")
    return None if kind == "none" else kind


def context_options(kind: str, **given: Any) -> Dict[str, Any]:
    """The options of the context module ``kind``: the keyword arguments of its constructor
    that have a value by default (the NL block's module-valued ``norm``, None by default, is
    not one), with ``given`` over them. These signatures are where every default of the GC and
    NL blocks in gcnet's configs comes from. An unknown key raises a ValueError."""
    module = _CONTEXT_MODULES.get(check_context_type(kind))
    parameters = list(inspect.signature(module).parameters.values())[1:] if module else []  # after the channels
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty and p.default is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{kind} has unknown keys {unknown}; allowed: {sorted(defaults)}")
    return dict(defaults, **given)


def create_context(kind: ContextSpec, channels: int, **options: Any) -> Optional[nn.Module]:
    """The context module on ``channels`` channels that ``kind`` names: "gc", "nl" or "snl"
    (with :func:`context_options` ``(kind, **options)``), None or "none" (no module), or a
    callable that takes the channels and ``options`` (a module class or a ``functools.partial``
    of this function), as detectron2's ``get_norm`` takes a name or a callable."""
    if callable(kind):
        return kind(channels, **options)
    if check_context_type(kind) is None:
        return None
    return _CONTEXT_MODULES[kind](channels, **context_options(kind, **options))
