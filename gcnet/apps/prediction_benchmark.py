"""Images/s of ``tools/predict.py`` against the demo's loop, on the same images and weights
(issue "At scale": a benchmark, not a timed test).

Each row runs in a fresh process on the same image list: the demo's loop (read an image, then
:class:`gcnet.engine.Predictor` on it, one at a time; the drawing left out), and
``tools/predict.py`` at batch 1 and 4 and with 2 processes. "images/s" counts the prediction
loop (from the first image to the last result written); "wall s" the whole command, start-up
(imports, model, weights) included. Without weights the model gets random weights, saved once
for every row: a random detector keeps as many instances as it may (100 an image), the most
mask pasting and encoding.
"""

import concurrent.futures
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from detectron2.config import instantiate

from gcnet.data import list_images, read_image
from gcnet.engine import GCNetCheckpointer, Predictor, load_config
from gcnet.utils.known_warnings import filter_known_warnings

__all__ = ["PREDICT_RUNS", "prediction_rows", "prediction_table"]

# The rows of tools/predict.py: (label, its options).
PREDICT_RUNS = (
    ("predict.py --batch-size 1", ["--batch-size", "1"]),
    ("predict.py --batch-size 4", ["--batch-size", "4"]),
    ("predict.py --batch-size 1, 2 processes", ["--batch-size", "1", "--num-gpus", "2", "--dist-url", "auto"]),
)


def _demo_loop(paths: Sequence[str], config_file: str, opts: Sequence[str], device: str) -> Dict[str, float]:
    """The demo's loop over ``paths``: the images and seconds of the loop."""
    predictor = Predictor(load_config(config_file, list(opts)), device=device)
    start = time.perf_counter()
    for path in paths:
        predictor(read_image(path, format="BGR"))
    return {"images": len(paths), "seconds": time.perf_counter() - start}


def _demo_row(paths: Sequence[str], config_file: str, opts: Sequence[str], device: str) -> Dict[str, float]:
    """:func:`_demo_loop` in a fresh process (the warning filter first, before its imports)."""
    start = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, spawn, initializer=filter_known_warnings) as process:
        row = process.submit(_demo_loop, list(paths), config_file, list(opts), device).result()
    return dict(row, wall=time.perf_counter() - start)


def _predict_row(command: List[str]) -> Dict[str, float]:
    """``tools/predict.py`` with ``command``: the images and seconds it reports, and its wall time."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = re.search(r"Predicted (\d+) images in ([\d.]+) s", result.stdout)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return {"images": int(found.group(1)), "seconds": float(found.group(2)), "wall": wall}


def _weights(config_file: str, opts: Sequence[str], weights: Optional[str], folder: str) -> List[str]:
    """``opts`` with ``weights``, else with random weights saved in ``folder``."""
    if not weights:
        torch.manual_seed(0)
        model = instantiate(load_config(config_file, list(opts)).model)
        GCNetCheckpointer(model, save_dir=folder).save("random")
        weights = os.path.join(folder, "random.pth")
    return [*opts, f"train.init_checkpoint={weights}"]


def prediction_rows(
    predict_script: str,
    images: str,
    count: int,
    config_file: str,
    opts: Sequence[str] = (),
    weights: Optional[str] = None,
    num_workers: int = 2,
    device: str = "cpu",
) -> List[Tuple[str, Dict[str, float]]]:
    """(label, {images, seconds, wall}) of the demo's loop and of each of :data:`PREDICT_RUNS`
    on the first ``count`` images of the folder ``images``."""
    with tempfile.TemporaryDirectory(prefix="gcnet-benchmark-") as tmp:
        paths = [path for path, _ in list_images([images])][:count]
        list_file = os.path.join(tmp, "images.txt")
        with open(list_file, "w") as f:
            f.write("\n".join(paths) + "\n")
        opts = _weights(config_file, opts, weights, tmp)
        rows = [("demo loop (Predictor, one image at a time)", _demo_row(paths, config_file, opts, device))]
        common = ["--config-file", config_file, "--device", device, "--num-workers", str(num_workers), "--opts", *opts]
        for index, (label, options) in enumerate(PREDICT_RUNS):
            command = [predict_script, "--input", list_file, "--output", os.path.join(tmp, f"run{index}"), *options]
            rows.append((label, _predict_row([*command, *common])))
    return rows


def prediction_table(rows: Sequence[Tuple[str, Dict[str, float]]]) -> str:
    """The rows of :func:`prediction_rows` as a Markdown table."""
    lines = ["| run | images/s | loop s | wall s |", "|---|---|---|---|"]
    lines += [
        f"| {label} | {r['images'] / r['seconds']:.2f} | {r['seconds']:.1f} | {r['wall']:.1f} |" for label, r in rows
    ]
    return "\n".join(lines)
