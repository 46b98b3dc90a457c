"""Choosing between ways of running the same model by timing them on the device they run on,
once: the choice is kept in a small JSON file, keyed by the device, PyTorch's version, the
number of CPU threads, the dtype and the model's architecture, so that later runs on the same
machine take it without measuring again (delete the file, or point ``$GCNET_CALIBRATION_FILE``
elsewhere, to measure again).

The measurement: each candidate runs once to warm up, then all of them ``rounds`` times,
interleaved (so that a burst of other work on a shared machine slows all of them alike), and
each keeps its fastest run. A candidate other than the default is chosen only when it is at
least ``margin`` faster than the default: differences within the noise of a shared machine keep
the default.
"""

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from gcnet.utils.download_cache import cache_root

__all__ = ["CALIBRATION_ENV", "calibration_file", "device_key", "model_key", "measure", "choose"]

logger = logging.getLogger(__name__)

# Where the choices are kept (default: calibration.json in gcnet's cache folder).
CALIBRATION_ENV = "GCNET_CALIBRATION_FILE"
# Timed rounds per candidate, and how much faster than the default another must be to be chosen.
ROUNDS, MARGIN = 3, 0.05


def calibration_file() -> str:
    """``$GCNET_CALIBRATION_FILE``, else ``calibration.json`` in gcnet's cache folder."""
    return os.environ.get(CALIBRATION_ENV) or os.path.join(cache_root(), "calibration.json")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_key(device: torch.device) -> str:
    """The device as the choices depend on it: the GPU's name and compute capability, or the
    CPU's name, its vector instruction set and the threads PyTorch uses."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda {torch.cuda.get_device_name(device)} sm_{major}{minor}"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{device.type} {_cpu_name()} {capability} {torch.get_num_threads()} threads"


def model_key(model: nn.Module) -> str:
    """A digest of the model's architecture (its modules and their shapes), not its weights."""
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    candidates: Dict[str, Callable[[], object]], device: torch.device, rounds: int = ROUNDS
) -> Dict[str, float]:
    """The fastest of ``rounds`` interleaved runs of each candidate (a function that runs the
    model one way), in seconds, after one warm-up run each."""
    for run in candidates.values():
        run()
    seconds = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            choices = json.load(f)
        return choices if isinstance(choices, dict) else {}
    except (OSError, ValueError, RecursionError):  # none yet, or unreadable: measure again
        return {}


def _save(path: str, key: str, entry: dict) -> None:
    """Add ``entry`` under ``key`` to the file: written under a name of its own and renamed over
    it, so that a reader never sees half a file (two processes saving at once may keep one of
    their entries; the other measures again next time)."""
    choices = _load(path)
    choices[key] = entry
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".calibration-", suffix=".partial", dir=folder)
        with os.fdopen(handle, "w") as f:
            json.dump(choices, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache: the choice holds for this run only
        logger.warning(f"Could not keep the calibration in {path}: {e}")


def choose(
    key: str,
    names: Sequence[str],
    make_candidates: Callable[[], Dict[str, Callable[[], object]]],
    default: str,
    device: torch.device,
    rounds: int = ROUNDS,
    margin: float = MARGIN,
) -> Tuple[str, Optional[Dict[str, float]]]:
    """The fastest of the ways ``names`` of running a model on ``device``: the choice kept
    under ``key`` when there is one (then no seconds), else measured on the candidates that
    ``make_candidates()`` builds (name -> a function that runs the model that way;
    :func:`measure`) and kept. Returns the chosen name and the measured seconds."""
    path = calibration_file()
    entry = _load(path).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("choice"), str) and entry["choice"] in names:
        return entry["choice"], None
    logger.info(f"Measuring {', '.join(names)} on {key.split('|')[0]}, once (kept in {path})")
    seconds = measure(make_candidates(), device, rounds)
    fastest = min(seconds, key=seconds.get)
    choice = fastest if seconds[fastest] < (1 - margin) * seconds[default] else default
    _save(path, key, {"choice": choice, "seconds": seconds})
    timings = ", ".join(f"{name} {s:.3f} s" for name, s in seconds.items())
    logger.info(f"Measured: {timings}; chose {choice}")
    return choice, seconds
