#!/usr/bin/env python
"""Export a detector (Mask R-CNN), a semantic segmentation model or a GC-ResNet backbone to
TorchScript and/or ONNX, and check the export against the eager model.

    python tools/export_model.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py \\
        --format torchscript onnx --output exported/ --sample-image photo.jpg \\
        --check-images ../shared/data/balloon/val --opts train.init_checkpoint=gcnet://mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco

--export model exports a detector (detectron2's GeneralizedRCNN) or a segmentation model with
its inference; --export backbone the bottom-up GC-ResNet of the config's backbone. The model is
traced on the image of --sample-image (resized as the test loader does) or a random one of
--input-size, and writes <output>/model.ts and/or model.onnx (one trace serves both formats of
a detector). The export is then run on the traced input: a detector's detections must match the
eager model's (gcnet.export.DetectionTolerance, also on every --check-images image, at its own
size), other models' outputs must not differ by more than --tolerance. --benchmark N times the
exported and the eager model on the traced input.
"""
import argparse
import glob
import os
import statistics
import sys
import time
from typing import Callable, List

from gcnet.utils.known_warnings import filter_known_warnings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=("torchscript", "onnx"), nargs="+", required=True)  # EXPORT_FORMATS
    parser.add_argument("--export", choices=["backbone", "model"], default="model")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for model.ts / model.onnx")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sample-image", metavar="FILE", help="trace on this image")
    source.add_argument("--input-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--check-images", nargs="+", default=[], metavar="PATH", help="detectors: also compare on these images (files, folders, globs)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="backbones and segmentation: largest accepted |exported - eager|")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N", help="time the exported and eager models N times on the traced input")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return get_parser().parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and bad options are answered before the slow imports below
    filter_known_warnings()

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.modeling import GeneralizedRCNN
from detectron2.utils.logger import setup_logger
from detectron2.utils.registry import locate

import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer, TestPreprocessor, load_config
from gcnet.export import (
    compare_detections,
    detections_from_outputs,
    eager_outputs,
    export_onnx,
    export_torchscript,
    output_names,
    trace_model,
    tracing_adapter,
)
from gcnet.modeling import ContextSegmentor

FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def model_class(cfg, what: str) -> type:
    """The class of the model to export, checked before it is built."""
    target = cfg.model._target_
    target = locate(target) if isinstance(target, str) else target
    if what == "model" and not (isinstance(target, type) and issubclass(target, (GeneralizedRCNN, ContextSegmentor))):
        raise ValueError(
            f"--export model supports detectors (GeneralizedRCNN) and semantic segmentation models (ContextSegmentor), "
            f"got {getattr(target, '__name__', target)}; use --export backbone"
        )
    return target


def build_model(cfg, what: str):
    """What to export, in eval mode with the weights of ``train.init_checkpoint``: the detector
    or segmentation model ("model"), or the bottom-up GC-ResNet of the config's backbone
    ("backbone")."""
    model = instantiate(cfg.model).eval()
    if cfg.train.init_checkpoint:
        GCNetCheckpointer(model).load(cfg.train.init_checkpoint)
    if what == "model":
        return model
    backbone = model.backbone
    return getattr(backbone, "bottom_up", backbone).eval()


def model_input(cfg, model, image_path: str) -> dict:
    """An image file as the model takes it: ``{"image", "height", "width", "name"}`` after the
    test loader's resize and input format; a backbone's image also normalized, with a batch
    dimension."""
    prepared = TestPreprocessor(cfg)(read_image(image_path, format="BGR"))
    if not isinstance(model, (GeneralizedRCNN, ContextSegmentor)):
        prepared["image"] = normalize(cfg, prepared["image"])
    return dict(prepared, name=image_path)


def normalize(cfg, image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(cfg.model.pixel_mean).view(-1, 1, 1)
    std = torch.tensor(cfg.model.pixel_std).view(-1, 1, 1)
    return ((image - mean) / std)[None]


def example_input(cfg, model, args) -> dict:
    """The traced input: the sample image (:func:`model_input`), else a random image of
    --input-size."""
    if args.sample_image:
        return model_input(cfg, model, args.sample_image)
    height, width = args.input_size
    image = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, height, width)).astype("float32"))
    if not isinstance(model, (GeneralizedRCNN, ContextSegmentor)):
        image = normalize(cfg, image)
    return dict(image=image, height=height, width=width, name="a random image")


def load_exported(fmt: str, path: str) -> Callable[[torch.Tensor], List[np.ndarray]]:
    """The exported model at ``path`` as a function of the input tensor, returning numpy arrays."""
    if fmt == "torchscript":
        module = torch.jit.load(path)

        def run(example):
            with torch.no_grad():
                return [t.numpy() for t in module(example)]

        return run
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda example: session.run(None, {"image": example.numpy()})


def run_exported(fmt: str, path: str, example: torch.Tensor) -> List[np.ndarray]:
    return load_exported(fmt, path)(example)


def check_images(patterns: List[str]) -> List[str]:
    """The image files of --check-images (files, folders, globs), sorted; none found is an error."""
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            files += [os.path.join(pattern, f) for f in sorted(os.listdir(pattern)) if f.lower().endswith(IMAGE_EXTENSIONS)]
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


def export(model, example, formats, output: str) -> dict:
    """Write each format; return {format: path}. A detector is traced once for both formats."""
    traced = None
    if "torchscript" in formats or isinstance(model, GeneralizedRCNN):
        watch = Stopwatch()
        traced = trace_model(model, example)
        print(f"Traced the model on a {'x'.join(map(str, example.shape))} input in {watch}")
    paths = {}
    for fmt in formats:
        paths[fmt] = os.path.join(output, FILE_NAMES[fmt])
        watch = Stopwatch()
        if fmt == "torchscript":
            export_torchscript(model, example, paths[fmt], traced=traced)
        else:
            export_onnx(model, example, paths[fmt], traced=traced)
        print(f"Wrote {paths[fmt]} ({os.path.getsize(paths[fmt]) / 2**20:.1f} MiB) in {watch}")
    return paths


def check_detector(model, runners: dict, inputs: List[dict]) -> bool:
    """Compare each exported detector with the eager one on each input; print one line per
    image and format. True when every one matches (DetectionTolerance)."""
    names = output_names(model)
    masks = names.index("pred_masks") if "pred_masks" in names else None
    ok = True
    for item in inputs:
        eager = [t.numpy() for t in eager_outputs(model, item["image"])]
        expected = detections_from_outputs(eager, names, item["height"], item["width"])
        for fmt, run in runners.items():
            exported = run(item["image"])
            found = detections_from_outputs(exported, names, item["height"], item["width"])
            roi_masks = (torch.from_numpy(eager[masks]), torch.as_tensor(exported[masks])) if masks is not None else (None, None)
            comparison = compare_detections(expected, found, *roi_masks)
            ok &= comparison.matches
            print(f"{fmt} on {item['name']} ({'x'.join(map(str, item['image'].shape[1:]))}): {'match' if comparison.matches else 'MISMATCH'}: {comparison.summary()}")
    return ok


def check_outputs(model, runners: dict, example: torch.Tensor, tolerance: float) -> bool:
    eager = eager_outputs(model, example)
    ok = True
    for fmt, run in runners.items():
        difference = max(float(np.abs(e.numpy() - x).max()) for e, x in zip(eager, run(example)))
        print(f"{fmt}: largest difference from the eager model on the traced input: {difference:.3g}")
        if difference > tolerance:
            print(f"export_model: the {fmt} model differs from the eager one by {difference:.3g} > --tolerance {tolerance}", file=sys.stderr)
            ok = False
    return ok


def benchmark(model, runners: dict, example: torch.Tensor, repeats: int) -> None:
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
        print(f"{name}: {statistics.median(wall):.3f} s per call, {statistics.median(cpu):.3f} s CPU time (medians of {repeats}; {torch.get_num_threads()} torch threads)")


def export_and_check(args) -> bool:
    """Export as ``args`` say, check the export (and time it with --benchmark); True when it
    matches the eager model. Bad input raises a ValueError before the model is built."""
    cfg = load_config(args.config_file, args.opts)
    if args.sample_image and not os.path.isfile(args.sample_image):
        raise ValueError(f"--sample-image {args.sample_image}: no such file")
    target = model_class(cfg, args.export)
    detector = args.export == "model" and issubclass(target, GeneralizedRCNN)
    images = check_images(args.check_images) if args.check_images else []
    if images and not detector:
        raise ValueError("--check-images compares detectors only; other exports are checked on the traced input")
    model = build_model(cfg, args.export)
    sample = example_input(cfg, model, args)
    paths = export(model, sample["image"], list(dict.fromkeys(args.format)), args.output)
    runners = {fmt: load_exported(fmt, path) for fmt, path in paths.items()}
    if isinstance(model, GeneralizedRCNN):
        others = [f for f in images if not (args.sample_image and os.path.samefile(f, args.sample_image))]
        ok = check_detector(model, runners, [sample] + [model_input(cfg, model, f) for f in others])
    else:
        ok = check_outputs(model, runners, sample["image"], args.tolerance)
    if args.benchmark:
        benchmark(model, runners, sample["image"], args.benchmark)
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logger(name="gcnet")
    try:
        ok = export_and_check(args)
    except ValueError as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    if not ok:
        print("export_model: the exported model does not match the eager one (see above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
