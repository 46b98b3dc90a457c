"""A whole detector's inference, before and after the fast path, eager, compiled and exported,
side by side (``tools/benchmark.py inference``), and the accuracy of bfloat16 inference against
float32 (``tools/benchmark.py precision``); tools/README.md gives the figures.

Speed (:func:`inference_rows`): one photo, resized as the test loader does, through each way of
running the same weights: "before" is the path before the fast path existed (the model as
built, contiguous; its exports as traced from it, onnxruntime with its own defaults, TorchScript
as loaded), the others the fast path (:mod:`gcnet.engine.inference`, the exporter with folded
weights, onnxruntime with :func:`gcnet.export.onnx_session_options`). All ways of one model run
interleaved, round after round, and each keeps its fastest round (a shared machine slows all
alike); the process's CPU time is given beside the wall clock. Every way's detections are
compared with those of "before, eager" by the exporter's rule (:class:`gcnet.export.DetectionTolerance`).

Accuracy (:func:`precision_rows`): on real photos, the detections of the bfloat16 predictor
paired with the float32 ones (same class, box IoU at least 0.5, by descending score); per photo,
the share paired, the smallest box IoU and the largest score difference of the pairs, and the
smallest IoU of their pasted masks.
"""

import contextlib
import copy
import dataclasses
import os
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import pairwise_iou

from gcnet.data import read_image
from gcnet.engine import InferenceOptions, Predictor, TestPreprocessor, prepare_for_inference
from gcnet.export import compare_detections, detections_from_outputs, load_exported, output_names, tracing_adapter

from .export_check import FILE_NAMES, write_exports

__all__ = [
    "BFLOAT16",
    "WAYS",
    "check_ways",
    "build_ways",
    "time_ways",
    "inference_rows",
    "inference_table",
    "precision_rows",
    "precision_table",
]

# before: the model as built and its exports as they ran before the fast path.
WAYS = (
    "before: eager",
    "before: ONNX",
    "before: TorchScript",
    "eager",
    "eager, channels_last",
    "compiled",
    "ONNX",
    "TorchScript",
    "eager, bfloat16",
)

Runner = Callable[[torch.Tensor], Sequence]


def _eager(model: nn.Module, image: torch.Tensor, setup=None) -> Runner:
    adapter = tracing_adapter(model, image)

    def run(x: torch.Tensor):
        with torch.no_grad(), setup.autocast() if setup else contextlib.nullcontext():
            return [t.float() if t.is_floating_point() else t for t in adapter(x)]

    return run


def _fast(model: nn.Module, image: torch.Tensor, **options) -> Runner:
    fast = copy.deepcopy(model)
    setup = prepare_for_inference(fast, InferenceOptions(**options), image.device)
    return _eager(fast, image, setup)


def _exports(model: nn.Module, image: torch.Tensor, folder: str) -> Dict[str, str]:
    """model.ts and model.onnx of ``model`` traced on ``image``, in ``folder`` (written once)."""
    paths = {fmt: os.path.join(folder, name) for fmt, name in FILE_NAMES.items()}
    if not all(os.path.isfile(p) for p in paths.values()):
        os.makedirs(folder, exist_ok=True)
        write_exports(model, image, list(FILE_NAMES), folder, report=lambda line: None)
    return paths


def _onnx_defaults(path: str) -> Runner:
    """An ONNX model as ``load_exported`` ran it before: onnxruntime's default session options."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x.numpy()})


def check_ways(ways: Sequence[str]) -> None:
    """Raise a ValueError naming the ways that are not in :data:`WAYS`."""
    unknown = [w for w in ways if w not in WAYS]
    if unknown:
        raise ValueError(f"Unknown ways {unknown}; choose from {', '.join(WAYS)}")


def build_ways(model: nn.Module, image: torch.Tensor, ways: Sequence[str], folder: str) -> Dict[str, Runner]:
    """A runner (image -> the exported outputs) for each of ``ways`` (:data:`WAYS`) of running
    ``model`` (in eval mode); exports are written under ``folder`` ("before" and "after")."""
    check_ways(ways)
    runners: Dict[str, Runner] = {}
    needs_before = any(w in ways for w in ("before: ONNX", "before: TorchScript"))
    before = _exports(model, image, os.path.join(folder, "before")) if needs_before else {}
    folded = copy.deepcopy(model)
    prepare_for_inference(folded, InferenceOptions(channels_last=False, compile=False), image.device)
    needs_after = any(w in ways for w in ("ONNX", "TorchScript"))
    after = _exports(folded, image, os.path.join(folder, "after")) if needs_after else {}
    makers = {
        "before: eager": lambda: _eager(model, image),
        "before: ONNX": lambda: _onnx_defaults(before["onnx"]),
        "before: TorchScript": lambda: load_exported("torchscript", before["torchscript"]),
        "eager": lambda: _fast(model, image, channels_last=False, compile=False),
        "eager, channels_last": lambda: _fast(model, image, channels_last=True, compile=False),
        "compiled": lambda: _fast(model, image, channels_last=False, compile=True),
        "ONNX": lambda: load_exported("onnx", after["onnx"]),
        "TorchScript": lambda: load_exported("torchscript", after["torchscript"]),
        "eager, bfloat16": lambda: _fast(model, image, channels_last=True, compile=False, bfloat16=True),
    }
    for way in ways:
        runners[way] = makers[way]()
    return runners


def time_ways(runners: Dict[str, Runner], image: torch.Tensor, rounds: int) -> Dict[str, dict]:
    """The fastest of ``rounds`` interleaved rounds of each runner (wall clock and this
    process's CPU time, seconds), after two warm-up calls each (TorchScript optimises its graph
    on its first calls); with each runner's outputs."""
    results = {}
    for way, run in runners.items():
        outputs = [run(image) for _ in range(2)][-1]
        outputs = [np.array(o.numpy() if isinstance(o, torch.Tensor) else o) for o in outputs]  # copies
        results[way] = dict(wall=float("inf"), cpu=float("inf"), outputs=outputs)
    for _ in range(rounds):
        for way, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(image)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[way]["wall"], results[way]["cpu"] = min(results[way]["wall"], wall), min(results[way]["cpu"], cpu)
    return results


def build_model(config: str, weights_from: str = "") -> nn.Module:
    """The model of the LazyConfig ``config`` in eval mode, with random weights (seeded), or
    those of the model of ``weights_from`` where given (a GC model with its baseline's: its GC
    blocks then start as the identity, and both make the same detections)."""
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(config).model)
    if weights_from:
        torch.manual_seed(0)
        model.load_state_dict(instantiate(LazyConfig.load(weights_from).model).state_dict(), strict=False)
    return model.eval()


def _compare(model: nn.Module, image_input: dict, reference: list, outputs: list) -> dict:
    names = output_names(model)
    size = image_input["height"], image_input["width"]
    expected, found = (detections_from_outputs(o, names, *size) for o in (reference, outputs))
    masks = names.index("pred_masks") if "pred_masks" in names else None
    roi_masks = (torch.from_numpy(reference[masks]), torch.from_numpy(outputs[masks])) if masks is not None else ()
    comparison = compare_detections(expected, found, *roi_masks)
    box_scale = float(np.abs(reference[names.index("pred_boxes")]).max(initial=1.0))
    relative_box = comparison.max_box_px / box_scale
    return dict(matches=comparison.matches, relative_box=relative_box, summary=comparison.summary())


def inference_rows(
    models: Dict[str, tuple], image: str, threads: Sequence[int], rounds: int, ways: Sequence[str], folder: str
) -> List[dict]:
    """For each model (name -> (config, the config whose weights it takes, or "")) and number
    of threads, a row per way (:func:`build_ways`, :func:`time_ways`) on the photo ``image``:
    seconds per image, wall clock and CPU time, and how its detections compare with those of
    "before: eager" (:class:`gcnet.export.DetectionTolerance`)."""
    check_ways(ways)
    rows = []
    for name, (config, weights_from) in models.items():
        model = build_model(config, weights_from)
        item = TestPreprocessor(LazyConfig.load(config))(read_image(image, format="BGR"))
        for count in threads:
            torch.set_num_threads(count)
            runners = build_ways(model, item["image"], ways, os.path.join(folder, name))
            timed = time_ways(runners, item["image"], rounds)
            reference = timed[ways[0]]["outputs"]
            for way, result in timed.items():
                row = dict(model=name, threads=count, way=way, wall=result["wall"], cpu=result["cpu"])
                row["size"] = list(item["image"].shape[1:])
                rows.append(dict(row, **_compare(model, item, reference, result["outputs"])))
    return rows


def inference_table(rows: List[dict]) -> str:
    """The rows of :func:`inference_rows` as a Markdown table: per way and number of threads,
    each model's seconds per image (wall clock, CPU time), its speed-up over the first way,
    the last model's time over the first's, and whether the detections matched."""
    names = list(dict.fromkeys(r["model"] for r in rows))
    by_key = {(r["model"], r["threads"], r["way"]): r for r in rows}
    first_way = rows[0]["way"]
    header = " | ".join(f"{n} wall (CPU) s | x {first_way}" for n in names)
    lines = [f"| threads | way | {header} | {names[-1]} / {names[0]} | detections |"]
    lines.append("|---" * (4 + 2 * len(names)) + "|")
    for count in dict.fromkeys(r["threads"] for r in rows):
        for way in dict.fromkeys(r["way"] for r in rows):
            cells, found = [], [by_key.get((n, count, way)) for n in names]
            for r in found:
                speedup = by_key[(r["model"], count, first_way)]["wall"] / r["wall"]
                cells.append(f"{r['wall']:.3f} ({r['cpu']:.3f}) | {speedup:.2f}")
            ratio = found[-1]["wall"] / found[0]["wall"]
            verdict = "match" if all(r["matches"] for r in found) else "differ: " + found[-1]["summary"].split(";")[0]
            lines.append(f"| {count} | {way} | {' | '.join(cells)} | {ratio:.3f} | {verdict} |")
    return "\n".join(lines)


def _pair_by_overlap(reference, other, min_iou: float = 0.5):
    """(reference index, other index) pairs: same class, box IoU >= ``min_iou``, by descending
    reference score, each taking the free detection it overlaps most."""
    iou = pairwise_iou(reference.pred_boxes, other.pred_boxes)
    same = reference.pred_classes[:, None] == other.pred_classes[None, :]
    iou = torch.where(same, iou, torch.zeros_like(iou))
    pairs, taken = [], set()
    for i in torch.argsort(reference.scores, descending=True).tolist():
        free = [j for j in (iou[i] >= min_iou).nonzero().flatten().tolist() if j not in taken]
        if free:
            j = max(free, key=lambda c: float(iou[i, c]))
            pairs.append((i, j, float(iou[i, j])))
            taken.add(j)
    return pairs


BFLOAT16 = InferenceOptions(channels_last=False, compile=False, bfloat16=True)


def precision_rows(
    cfg,
    images: Sequence[str],
    device: str = "cpu",
    score_threshold: float = 0.05,
    compared: InferenceOptions = BFLOAT16,
) -> List[dict]:
    """The detections of the predictor of ``cfg`` with the options ``compared`` (bfloat16)
    against those of the float32 one (otherwise the same options) on each image (see the
    module docstring), both with ``score_threshold``."""
    float32 = dataclasses.replace(compared, bfloat16=False)
    predictors = {
        dtype: Predictor(cfg, device=device, score_threshold=score_threshold, inference=options)
        for dtype, options in (("float32", float32), ("bfloat16", compared))
    }
    rows = []
    for path in images:
        photo = read_image(path, format="BGR")
        reference, other = (predictors[d](photo)["instances"].to("cpu") for d in ("float32", "bfloat16"))
        pairs = _pair_by_overlap(reference, other)
        row = dict(image=os.path.basename(path), float32=len(reference), bfloat16=len(other), paired=len(pairs))
        if pairs:
            i, j = (torch.tensor(index) for index in list(zip(*pairs))[:2])
            row["min_box_iou"] = min(p[2] for p in pairs)
            row["max_score_difference"] = float((reference.scores[i] - other.scores[j]).abs().max())
            if reference.has("pred_masks"):
                a, b = reference.pred_masks[i], other.pred_masks[j]
                union = (a | b).flatten(1).sum(1).clamp(min=1)
                row["min_mask_iou"] = float(((a & b).flatten(1).sum(1) / union).min())
        rows.append(row)
    return rows


def precision_table(rows: List[dict]) -> str:
    """The rows of :func:`precision_rows` as a Markdown table."""
    lines = [
        "| image | float32 | bfloat16 | paired | smallest box IoU | largest score difference | smallest mask IoU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        values = [f"{r[k]:.4f}" if k in r else "" for k in ("min_box_iou", "max_score_difference", "min_mask_iou")]
        lines.append(f"| {r['image']} | {r['float32']} | {r['bfloat16']} | {r['paired']} | {' | '.join(values)} |")
    return "\n".join(lines)
