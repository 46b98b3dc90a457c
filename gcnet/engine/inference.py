"""The inference fast path of the predictor (and so of the demos and ``tools/predict.py``)
(README "Performance"):

* each fixed BatchNorm folded into the convolution before it (:func:`gcnet.modeling.fold_batch_norms`):
  exact, on by default; also for exports and ``--eval-only``, which take nothing else of it;
* the ``channels_last`` memory format and ``torch.compile``: on, off, or "auto", chosen by
  measurement on the device the model runs on (:mod:`.calibration`), except that "auto" never
  compiles on a CPU: there compiled inference was no faster than eager PyTorch at COCO sizes and
  compiles again, for about a minute, for each new input size (tools/README.md);
* bfloat16 autocast, opt-in: on GPUs that support it and on CPUs with native bf16 (AVX512-BF16,
  AMX), with the accuracy that ``tools/benchmark.py precision`` reports.

The options are the keys of ``train.inference`` in the configs (:class:`InferenceOptions`).
"""

import contextlib
import copy
import dataclasses
import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from gcnet.modeling import fold_batch_norms

from .calibration import choose, device_key, model_key

__all__ = ["InferenceOptions", "InferenceSetup", "compile_targets", "native_bfloat16", "prepare_for_inference"]

logger = logging.getLogger(__name__)

Switch = Union[bool, str]
AUTO = "auto"


@dataclass(frozen=True)
class InferenceOptions:
    """How a model runs for inference; the keys of ``train.inference``.

    Attributes:
        fold_norm: fold each fixed BatchNorm into the conv before it (exact).
        channels_last: run in the channels_last memory format: True, False, or "auto" (measured).
        compile: ``torch.compile`` the model's dense parts (backbone, RPN head, box head, a
            segmentation head): True, False, or "auto" (measured on GPUs; off on CPUs).
        bfloat16: run under bfloat16 autocast (opt-in; results differ from float32 within
            bf16's precision).
    """

    fold_norm: bool = True
    channels_last: Switch = AUTO
    compile: Switch = AUTO
    bfloat16: bool = False

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = (True, False) if field.type is bool else (True, False, AUTO)
            if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
                expected = "true or false" if field.type is bool else "true, false or 'auto'"
                raise ValueError(f"train.inference.{field.name} must be {expected}, got {value!r}")

    @classmethod
    def from_config(cls, cfg, **overrides) -> "InferenceOptions":
        """``cfg.train.inference`` (a missing key takes its default), with the ``overrides``
        that are not None (the flags of a tool)."""
        names = [f.name for f in dataclasses.fields(cls)]
        given = cfg.train.get("inference", None) or {}
        if not isinstance(given, Mapping):
            raise ValueError(f"train.inference must be a dict with the keys {', '.join(names)}, got {given!r}")
        given = dict(given)
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"train.inference has no key {unknown[0]!r}; its keys are {', '.join(names)}")
        given.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**given)

    def to_dict(self) -> Dict[str, Switch]:
        return dataclasses.asdict(self)

    def check_device(self, device: torch.device) -> None:
        """Raise a ValueError for bfloat16 on a GPU without it (before a model is built)."""
        device = torch.device(device)
        if self.bfloat16 and device.type == "cuda" and not native_bfloat16(device):
            raise ValueError(
                f"train.inference.bfloat16: {torch.cuda.get_device_name(device)} does not support bfloat16"
            )


@dataclass
class InferenceSetup:
    """What :func:`prepare_for_inference` did: the norms folded, the layout, whether the dense
    parts are compiled, the autocast dtype, and the seconds measured where "auto" measured."""

    device: torch.device
    folded_norms: int = 0
    channels_last: bool = False
    compiled: bool = False
    bfloat16: bool = False
    measured: Optional[Dict[str, float]] = None

    def autocast(self) -> ContextManager:
        """The autocast of this setup (bfloat16), or a context that does nothing."""
        if not self.bfloat16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def describe(self) -> str:
        parts = [
            f"{self.folded_norms} BatchNorms folded",
            "channels_last" if self.channels_last else "contiguous",
            "compiled" if self.compiled else "eager",
            "bfloat16 autocast" if self.bfloat16 else "float32",
        ]
        text = "Inference: " + ", ".join(parts)
        if self.measured:
            text += " (measured: " + ", ".join(f"{name} {s:.3f} s" for name, s in self.measured.items()) + ")"
        return text


def native_bfloat16(device: torch.device, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``device`` computes in bfloat16 natively: a GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (read from ``cpuinfo``; False where that cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compile_targets(model: nn.Module) -> List[nn.Module]:
    """The parts of ``model`` that ``torch.compile`` takes whole (tensors in, tensors out): the
    backbone, and the RPN head, box head or segmentation head where there is one."""
    paths = ("backbone", "proposal_generator.rpn_head", "roi_heads.box_head", "sem_seg_head")
    targets = []
    for path in paths:
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, nn.Module):
            targets.append(module)
    return targets


def _compile(model: nn.Module, device: torch.device) -> None:
    # On CPUs, freezing lets inductor fold constants and prepack the convolutions' weights.
    options = {"freezing": True} if device.type == "cpu" else None
    for module in compile_targets(model):
        module.compile(options=options)


def _set_layout(model: nn.Module, channels_last: bool) -> None:
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _candidate_ways(options: InferenceOptions, device: torch.device) -> List[Tuple[bool, bool]]:
    """The (channels_last, compiled) combinations that "auto" leaves open, the default first
    (contiguous, eager, unless forced); "auto" compiles only on GPUs."""
    layouts = [options.channels_last] if options.channels_last != AUTO else [False, True]
    compiled = [options.compile] if options.compile != AUTO else [False, device.type != "cpu"]
    return [(bool(layout), bool(c)) for layout in layouts for c in dict.fromkeys(compiled)]


def _way_name(way: Tuple[bool, bool]) -> str:
    return ("channels_last" if way[0] else "contiguous") + ("+compiled" if way[1] else "")


def _candidates(model: nn.Module, ways: List[Tuple[bool, bool]], setup: InferenceSetup, run: Callable) -> dict:
    """name -> a function that runs the model each way (a compiled copy for the compiled ways)."""
    copies = {False: model}
    if any(compiled for _, compiled in ways):
        copies[True] = copy.deepcopy(model)
        _compile(copies[True], setup.device)

    def candidate(layout: bool, compiled: bool):
        target = copies[compiled]
        _set_layout(target, layout)
        with torch.no_grad(), setup.autocast():
            return run(target)

    return {_way_name(way): functools.partial(candidate, *way) for way in ways}


def _choose_way(model: nn.Module, options: InferenceOptions, setup: InferenceSetup, run: Optional[Callable]):
    """The (channels_last, compiled) of ``options``, "auto" resolved by the choice kept for this
    device and model, else measured (:func:`~.calibration.choose`)."""
    ways = _candidate_ways(options, setup.device)
    if len(ways) == 1:
        return ways[0]
    if run is None:
        raise ValueError("prepare_for_inference: 'auto' measures the model, give run(model)")
    dtype = "bfloat16" if options.bfloat16 else "float32"
    names = [_way_name(way) for way in ways]
    parts = [device_key(setup.device), f"torch {torch.__version__}", dtype, model_key(model), "/".join(names)]
    choice, setup.measured = choose(
        "|".join(parts), names, lambda: _candidates(model, ways, setup, run), names[0], setup.device
    )
    return ways[names.index(choice)]


def prepare_for_inference(
    model: nn.Module,
    options: InferenceOptions,
    device: torch.device,
    run: Optional[Callable[[nn.Module], object]] = None,
) -> InferenceSetup:
    """Apply ``options`` to ``model`` (in eval mode, weights loaded, on ``device``), in place.
    ``run(model)`` runs it once on a sample input; "auto" choices time it (:mod:`.calibration`).

    Raises:
        ValueError: bfloat16 on a GPU without bf16, or "auto" without ``run``.
    """
    device = torch.device(device)
    setup = InferenceSetup(device=device, bfloat16=options.bfloat16)
    options.check_device(device)
    if options.bfloat16 and not native_bfloat16(device):
        warnings.warn(
            "bfloat16 inference on a CPU without AVX512-BF16 or AMX is emulated, slower than float32", stacklevel=2
        )
    if options.fold_norm:
        setup.folded_norms = fold_batch_norms(model)
    setup.channels_last, setup.compiled = _choose_way(model, options, setup, run)
    _set_layout(model, setup.channels_last)
    if setup.compiled:
        _compile(model, device)
    return setup
