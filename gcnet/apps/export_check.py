"""Export with its check, as ``tools/export_model.py`` runs it: build the model of a LazyConfig
with its weights, trace it on a sample image (or a random one), write TorchScript and/or ONNX
and the config beside them, and run the exports against the eager model::

    ok = export_and_check(cfg, formats=["onnx"], output="exported/", what="model",
                          sample_image="photo.jpg", check_images=["val/"], tolerance=1e-3)

Every argument is checked, and the output folder written to, before the model is built.
Errors name the options of ``tools/export_model.py`` whose values they are about.
"""

import copy
import glob
import os
import statistics
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import GeneralizedRCNN
from detectron2.utils.registry import locate

from gcnet.data import read_image
from gcnet.data.image_io import IMAGE_EXTENSIONS
from gcnet.engine import GCNetCheckpointer, InferenceOptions, TestPreprocessor
from gcnet.export import (
    compare_detections,
    detections_from_outputs,
    eager_outputs,
    export_onnx,
    export_torchscript,
    load_exported,
    output_names,
    trace_model,
    tracing_adapter,
)
from gcnet.modeling import ContextSegmentor, fold_batch_norms
from gcnet.utils.file_io import atomic_path

from .outputs import check_writable_folder

__all__ = [
    "FILE_NAMES",
    "CONFIG_NAME",
    "export_and_check",
    "folded_copy",
    "write_exports",
    "check_detector",
    "check_outputs",
]

FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
# The config of the export, beside it: what an exported model's input is made with.
CONFIG_NAME = "config.yaml"

Report = Callable[[str], None]


def model_class(cfg, what: str) -> type:
    """The class of the model to export, checked before it is built."""
    target = cfg.model._target_
    target = locate(target) if isinstance(target, str) else target
    if what == "model" and not (isinstance(target, type) and issubclass(target, (GeneralizedRCNN, ContextSegmentor))):
        raise ValueError(
            "--export model supports detectors (GeneralizedRCNN) and semantic segmentation models "
            f"(ContextSegmentor), got {getattr(target, '__name__', target)}; use --export backbone"
        )
    return target


def build_model(cfg, what: str) -> torch.nn.Module:
    """What to export, in eval mode with the weights of ``train.init_checkpoint``: the detector
    or segmentation model ("model"), or the bottom-up GC-ResNet of the config's backbone
    ("backbone")."""
    model = instantiate(cfg.model).eval()
    if cfg.train.init_checkpoint:  # a backbone may be exported with the ImageNet weights of its config
        way_out = "give the weights of a model trained with this config (train.init_checkpoint=...)"
        GCNetCheckpointer(model).load(
            cfg.train.init_checkpoint, fit="all" if what == "model" else "init", way_out=way_out
        )
    if what == "model":
        return model
    backbone = model.backbone
    return getattr(backbone, "bottom_up", backbone).eval()


def folded_copy(model: torch.nn.Module, fold_norm: bool, report: Report = print) -> torch.nn.Module:
    """What is exported of ``model``: a copy with each fixed BatchNorm folded into its conv
    where ``fold_norm``, else ``model`` itself."""
    if not fold_norm:
        report("Exporting without folding the BatchNorms")
        return model
    exported = copy.deepcopy(model)
    report(f"Exporting with {fold_batch_norms(exported)} BatchNorms folded into their convs")
    return exported


def _normalize(cfg, image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(cfg.model.pixel_mean).view(-1, 1, 1)
    std = torch.tensor(cfg.model.pixel_std).view(-1, 1, 1)
    return ((image - mean) / std)[None]


def model_input(cfg, model, image_path: str) -> dict:
    """An image file as the model takes it: ``{"image", "height", "width", "name"}`` after the
    test loader's resize and input format; a backbone's image also normalized, with a batch
    dimension."""
    prepared = TestPreprocessor(cfg)(read_image(image_path, format="BGR"))
    if not isinstance(model, (GeneralizedRCNN, ContextSegmentor)):
        prepared["image"] = _normalize(cfg, prepared["image"])
    return dict(prepared, name=image_path)


def random_input(cfg, model, height: int, width: int) -> dict:
    """A random image of ``height`` x ``width`` (seeded), as :func:`model_input` makes it."""
    image = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, height, width)).astype("float32"))
    if not isinstance(model, (GeneralizedRCNN, ContextSegmentor)):
        image = _normalize(cfg, image)
    return dict(image=image, height=height, width=width, name="a random image")


def list_check_images(patterns: Sequence[str]) -> List[str]:
    """The image files of --check-images (files, folders, globs), sorted; none found is an error."""
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            names = sorted(os.listdir(pattern))
            files += [os.path.join(pattern, f) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            files += sorted(glob.glob(pattern)) or [pattern]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing or not files:
        raise ValueError(f"--check-images {missing[0] if missing else ' '.join(patterns)}: no such image file")
    return files


class Stopwatch:
    """Wall-clock and CPU seconds (this process, all its threads) since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.wall:.1f} s ({time.process_time() - self.cpu:.1f} s CPU)"


def write_exports(model, example: torch.Tensor, formats: Sequence[str], output: str, report: Report = print) -> dict:
    """Write each format into the folder ``output`` (:data:`FILE_NAMES`); return {format: path}.
    A detector is traced once for both formats."""
    traced = None
    if "torchscript" in formats or isinstance(model, GeneralizedRCNN):
        watch = Stopwatch()
        traced = trace_model(model, example)
        report(f"Traced the model on a {'x'.join(map(str, example.shape))} input in {watch}")
    paths = {}
    for fmt in formats:
        paths[fmt] = os.path.join(output, FILE_NAMES[fmt])
        watch = Stopwatch()
        if fmt == "torchscript":
            export_torchscript(model, example, paths[fmt], traced=traced)
        else:
            export_onnx(model, example, paths[fmt], traced=traced)
        report(f"Wrote {paths[fmt]} ({os.path.getsize(paths[fmt]) / 2**20:.1f} MiB) in {watch}")
    return paths


def check_detector(model, runners: dict, inputs: List[dict], report: Report = print) -> bool:
    """Compare each exported detector with the eager one on each input; report one line per
    image and format. True when every one matches (:class:`~gcnet.export.DetectionTolerance`)."""
    names = output_names(model)
    masks = names.index("pred_masks") if "pred_masks" in names else None
    ok = True
    for item in inputs:
        eager = [t.numpy() for t in eager_outputs(model, item["image"])]
        expected = detections_from_outputs(eager, names, item["height"], item["width"])
        for fmt, run in runners.items():
            exported = run(item["image"])
            found = detections_from_outputs(exported, names, item["height"], item["width"])
            roi_masks = (None, None)
            if masks is not None:
                roi_masks = (torch.from_numpy(eager[masks]), torch.as_tensor(exported[masks]))
            comparison = compare_detections(expected, found, *roi_masks)
            ok &= comparison.matches
            size = "x".join(map(str, item["image"].shape[1:]))
            verdict = "match" if comparison.matches else "MISMATCH"
            report(f"{fmt} on {item['name']} ({size}): {verdict}: {comparison.summary()}")
    return ok


def check_outputs(model, runners: dict, example: torch.Tensor, tolerance: float, report: Report = print) -> bool:
    """Compare each export's outputs with the eager model's on ``example``: True when none
    differs by more than ``tolerance``."""
    eager = eager_outputs(model, example)
    ok = True
    for fmt, run in runners.items():
        difference = max(float(np.abs(e.numpy() - x).max()) for e, x in zip(eager, run(example)))
        verdict = "" if difference <= tolerance else f", over --tolerance {tolerance}"
        report(f"{fmt}: largest difference from the eager model on the traced input: {difference:.3g}{verdict}")
        ok &= difference <= tolerance
    return ok


def benchmark(model, runners: dict, example: torch.Tensor, repeats: int, report: Report = print) -> None:
    """Median seconds per call, wall clock and this process's CPU time (all its threads), of
    the eager model (the traced inference, as exported) and of each export, on the traced
    input, after one warm-up call each."""
    adapter = tracing_adapter(model, example)

    def eager(x):
        with torch.no_grad():
            return adapter(x)

    for name, run in {"eager PyTorch": eager, **runners}.items():
        run(example)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            run(example)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        report(
            f"{name}: {statistics.median(wall):.3f} s per call, {statistics.median(cpu):.3f} s CPU time "
            f"(medians of {repeats}; {torch.get_num_threads()} torch threads)"
        )


def _save_config(cfg, output: str) -> str:
    path = os.path.join(output, CONFIG_NAME)
    with atomic_path(path) as partial:
        LazyConfig.save(cfg, partial)
    return path


def export_and_check(
    cfg,
    *,
    formats: Sequence[str],
    output: str,
    what: str,
    tolerance: float,
    sample_image: Optional[str] = None,
    input_size: Optional[Tuple[int, int]] = None,
    check_images: Sequence[str] = (),
    benchmark_repeats: int = 0,
    fold_norm: Optional[bool] = None,
    report: Report = print,
) -> bool:
    """Export the model of ``cfg`` (``what``: "model" or "backbone") in ``formats`` into the
    folder ``output``, with ``config.yaml`` (``cfg``) beside it, traced on ``sample_image`` or
    a random image of ``input_size``; check the exports against the eager model (detectors on
    ``check_images`` too, others within ``tolerance``) and time them ``benchmark_repeats``
    times. Returns True when the exports match. The exports carry folded BatchNorms unless
    ``fold_norm`` (default: the config's ``train.inference.fold_norm``) is False; the eager
    model they are checked against is the unfolded one either way.

    Raises:
        ValueError: bad arguments and an output folder that cannot be written, before the
            model is built.
    """
    if sample_image and not os.path.isfile(sample_image):
        raise ValueError(f"--sample-image {sample_image}: no such file")
    if not sample_image and not input_size:
        raise ValueError("export_and_check: give a sample image or an input size")
    detector = what == "model" and issubclass(model_class(cfg, what), GeneralizedRCNN)
    images = list_check_images(check_images) if check_images else []
    if images and not detector:
        raise ValueError("--check-images compares detectors only; other exports are checked on the traced input")
    fold_norm = InferenceOptions.from_config(cfg, fold_norm=fold_norm).fold_norm
    check_writable_folder(output)
    model = build_model(cfg, what)
    exported = folded_copy(model, fold_norm, report)
    sample = model_input(cfg, model, sample_image) if sample_image else random_input(cfg, model, *input_size)
    paths = write_exports(exported, sample["image"], list(dict.fromkeys(formats)), output, report)
    _save_config(cfg, output)
    runners = {fmt: load_exported(fmt, path) for fmt, path in paths.items()}
    if isinstance(model, GeneralizedRCNN):
        others = [f for f in images if not (sample_image and os.path.samefile(f, sample_image))]
        ok = check_detector(model, runners, [sample] + [model_input(cfg, model, f) for f in others], report)
    else:
        ok = check_outputs(model, runners, sample["image"], tolerance, report)
    if benchmark_repeats:
        benchmark(exported, runners, sample["image"], benchmark_repeats, report)
    return ok
