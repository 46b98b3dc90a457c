"""Loading checkpoint files without running code from them.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers only. The public
releases also hold numpy arrays and scalars (mmcv/mmengine ``meta``, evaluation scores) and,
when written by mmengine, a ``message_hub`` whose ``HistoryBuffer`` objects carry numpy arrays
and references to their own statistics methods. :func:`load_checkpoint_file` adds exactly
those types to torch's allow-list (:data:`SAFE_GLOBALS`), in both of torch's formats (the
legacy one of torch < 1.6 and the zip one); a ``HistoryBuffer`` comes back as an inert
:class:`UpstreamObject` holding its pickled state, so neither mmengine nor any of its code is
needed. Anything else is refused with :class:`UnsafeCheckpointError`, which names its type.

:func:`load_pickle_file` reads the plain pickles of detectron2's and Detectron's model zoos
(``.pkl``: dicts of numpy arrays) with an unpickler that builds nothing but numpy arrays,
numpy scalars and Python's own containers, numbers and strings.
"""

import codecs
import pickle
import re
from typing import Any, Callable, List

import numpy as np
import torch

__all__ = [
    "SAFE_GLOBALS",
    "HistoryBuffer",
    "UnsafeCheckpointError",
    "UpstreamObject",
    "load_checkpoint_file",
    "load_pickle_file",
]


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds an object of a type outside :data:`SAFE_GLOBALS`."""


class UpstreamObject:
    """An allow-listed object of an upstream library, loaded as data: ``state`` is what its
    pickle holds (for mmengine's ``HistoryBuffer``: ``max_length``, ``_log_history``,
    ``_count_history`` and the names of its ``statistics_methods``)."""

    upstream_type = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        keys = sorted(self.state) if isinstance(getattr(self, "state", None), dict) else "?"
        return f"<{self.upstream_type}, loaded as data: {keys}>"


class HistoryBuffer(UpstreamObject):
    """mmengine's ``mmengine.logging.history_buffer.HistoryBuffer``, as data."""

    upstream_type = "mmengine.logging.history_buffer.HistoryBuffer"


def _statistics_method(owner: type, name: str) -> str:
    """Stands for ``getattr`` in a HistoryBuffer's pickle, whose ``statistics_methods`` refer to
    ``HistoryBuffer.min``, ``.max``, ``.current``, ``.mean``: gives their name, and refuses
    any other use."""
    if owner is not HistoryBuffer or not isinstance(name, str) or not name.isidentifier():
        refused = f"builtins.getattr({owner!r}, {name!r})"
        raise pickle.UnpicklingError(f"refused: {refused}, not a HistoryBuffer statistics method")
    return f"{HistoryBuffer.upstream_type}.{name}"


def _under_numpy_names(function: Callable) -> List[tuple]:
    """``function`` under the module names numpy 1.x and 2.x pickle it with."""
    return [(function, f"numpy.{core}.multiarray.{function.__name__}") for core in ("core", "_core")]


# Exactly what the releases need beyond torch's own allow-list.
SAFE_GLOBALS = [
    np.ndarray,
    np.dtype,
    *(type(np.dtype(code)) for code in "?bBhHiIlLqQefd"),  # the dtype classes of numeric arrays
    *_under_numpy_names(np.zeros(0).__reduce__()[0]),  # _reconstruct: arrays
    *_under_numpy_names(np.float64(0).__reduce__()[0]),  # scalar: numpy numbers
    (HistoryBuffer, HistoryBuffer.upstream_type),
    (_statistics_method, "builtins.getattr"),
]
# What torch's weights-only unpickler (and _statistics_method) say when they refuse something.
_REFUSED = [
    re.compile(r"GLOBAL (\S+) was not an allowed global"),  # a class or function outside the allow-list
    re.compile(r"unsupported GLOBAL (\S+) whose module"),  # one of a module torch blocks (os, subprocess, ...)
    re.compile(r"but got <class '([^']+)'>"),  # an instance of such a class (a numpy object array)
    re.compile(r"unrecognized function (\S+)"),
    re.compile(r"refused: (builtins\.getattr\(.*\)), not"),
]


def _refusal(path: str, error: pickle.UnpicklingError) -> ValueError:
    """The error to raise for what an unpickler refused: an :class:`UnsafeCheckpointError`
    naming the refused type, else a ValueError with the reason the pickle is unreadable."""
    message = str(error)
    refused = next((m.group(1) for m in (pattern.search(message) for pattern in _REFUSED) if m), None)
    if refused:
        return UnsafeCheckpointError(
            f"Cannot load checkpoint {path}: it holds {refused}, which is not on the allow-list of checkpoint "
            "contents (tensors, numbers, strings, containers, numeric numpy arrays, mmengine's HistoryBuffer); "
            "unpickling it could run code"
        )
    reason = [line for line in message.rpartition("WeightsUnpickler error:")[2].splitlines() if line.strip()]
    return ValueError(f"unreadable pickle: {reason[0] if reason else message}")


def load_checkpoint_file(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with :data:`SAFE_GLOBALS` allowed.

    Raises:
        UnsafeCheckpointError: the file holds an object of another type (named in the message).
        ValueError: the pickle is corrupt (the reason, for the caller to put after the file
            name). Other errors of ``torch.load`` (a truncated zip archive, a missing file) pass
            through.
    """
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise _refusal(path, e) from None


# What a plain pickle of numpy arrays refers to (protocol 2 writes bytes through _codecs.encode).
_PICKLE_GLOBALS = {
    name: obj
    for obj, name in [
        (np.ndarray, "numpy.ndarray"),
        (np.dtype, "numpy.dtype"),
        (codecs.encode, "_codecs.encode"),
        *_under_numpy_names(np.zeros(0).__reduce__()[0]),
        *_under_numpy_names(np.float64(0).__reduce__()[0]),
        *[(np.arange(1).__reduce_ex__(5)[0], f"numpy.{core}.numeric._frombuffer") for core in ("core", "_core")],
    ]
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"GLOBAL {module}.{name} was not an allowed global")
        return _PICKLE_GLOBALS[f"{module}.{name}"]


def load_pickle_file(path: str) -> Any:
    """A plain pickle (detectron2's ``.pkl`` checkpoints, Python 2's included) read without
    running code: numpy arrays and scalars, containers, numbers and strings only.

    Raises:
        UnsafeCheckpointError: the file refers to anything else (named in the message).
        ValueError: the file is truncated or not a pickle (the reason).
    """
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise _refusal(path, e) from None
        except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            raise ValueError(f"unreadable pickle: {e or type(e).__name__}") from None
