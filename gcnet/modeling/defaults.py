"""Where the defaults of gcnet's models live, and how configs derive them.

Every default is written once, in the signature of the function or class that takes it (the
GC and NL blocks' own in :func:`gcnet.layers.context_options`). LazyConfigs start from
:func:`option_defaults`, so that every option is a key that command-line overrides may set and
an unknown key is refused; the yacs keys of :func:`gcnet.modeling.add_gcnet_config` read their
defaults from the same place through tables of ``KEY: "option.path"`` (:func:`yacs_defaults`,
:func:`options_from_yacs`). An option or yacs key that was renamed keeps working under its old
name, which says its new name once (:func:`deprecated_keywords`, :func:`options_from_yacs`).
"""

import functools
import inspect
import warnings
from typing import Any, Callable, Dict, Mapping, Optional, Set

from gcnet.layers import CONTEXT_TYPES, context_options

__all__ = ["option_defaults", "yacs_defaults", "options_from_yacs", "deprecated_keywords"]

# The deprecated names that have said their new name in this process.
_announced: Set[str] = set()


def _deprecated(old: str, new: str) -> None:
    """Warn, once per process, that ``old`` is deprecated and ``new`` is its name now."""
    if old not in _announced:
        _announced.add(old)
        warnings.warn(f"{old} is deprecated; use {new}", FutureWarning, stacklevel=3)


def deprecated_keywords(renamed: Mapping[str, str], implied: Optional[Mapping[str, Mapping[str, Any]]] = None):
    """A decorator: the function also takes each old keyword name of ``renamed`` (old -> new),
    which says its new name once (a FutureWarning) and sets the new one, over the value given
    for it (a LazyConfig holds every option under its new name, at its default). ``implied``:
    per old name, options it also sets where they are None (what the old name meant then)."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renamed.items():
                if old in kwargs:
                    also = (implied or {}).get(old, {})
                    now = ", ".join([new, *(f"{k}={v!r}" for k, v in also.items())])
                    _deprecated(f"{function.__name__}({old}=...)", now)
                    kwargs[new] = kwargs.pop(old)
                    for key, value in also.items():
                        kwargs[key] = value if kwargs.get(key) is None else kwargs[key]
            return function(*args, **kwargs)

        return wrapper

    return decorate


def _config_value(name: str, value: Any) -> Any:
    """A default as a config holds it: the full options of a context module for an option
    named after one ("gc", "nl"), dicts for mappings, lists for tuples."""
    if name in CONTEXT_TYPES:
        value = context_options(name, **(value or {}))
    if isinstance(value, Mapping):
        return {k: _config_value(k, v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def option_defaults(*targets: Callable) -> Dict[str, Any]:
    """Every keyword argument of ``targets`` (functions or classes) that has a default, with
    that default as a config holds it (the first target's where two share a name)."""
    defaults: Dict[str, Any] = {}
    for target in targets:
        for parameter in inspect.signature(target).parameters.values():
            if parameter.default is not parameter.empty:
                defaults.setdefault(parameter.name, _config_value(parameter.name, parameter.default))
    return defaults


def _lookup(options: Mapping, path: str) -> Any:
    for key in path.split("."):
        options = options[key]
    return options


def yacs_defaults(keys: Mapping[str, str], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The default of each yacs key of ``keys`` (yacs key -> dotted option path), read from
    ``defaults`` (:func:`option_defaults`)."""
    return {key: _lookup(defaults, path) for key, path in keys.items()}


def options_from_yacs(
    node: Mapping[str, Any], keys: Mapping[str, str], renamed: Optional[Mapping[str, str]] = None, prefix: str = ""
) -> Dict[str, Any]:
    """The options that the yacs ``node``'s keys of ``keys`` set, nested as the option paths say
    (``"gc.ratio"`` -> ``{"gc": {"ratio": ...}}``); lists as tuples. A deprecated key of
    ``renamed`` (old -> new, None unless set) that is set gives its value to the new one, and
    says so once (``prefix`` names the node: "MODEL.GCNET")."""
    values = dict(node)
    for old, new in (renamed or {}).items():
        if values.pop(old, None) is not None:
            _deprecated(f"{prefix}.{old}", f"{prefix}.{new}")
            values[new] = node[old]
    options: Dict[str, Any] = {}
    for key, path in keys.items():
        *parents, name = path.split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
        value = values[key]
        target[name] = tuple(value) if isinstance(value, list) else value
    return options
