"""The analysis of Section 3 on a model's predictions over images: the statistics of Tables 1-4
per non-local block, as a table and a JSON report, and Fig. 2's attention maps."""

import json
import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tqdm

from detectron2.data import DatasetCatalog

from gcnet.analysis import padded_input_size
from gcnet.data import list_images, read_image, write_image
from gcnet.utils.file_io import atomic_write

from .statistics import STATISTICS, NonLocalStatistics
from .visualize import query_attention_figure

__all__ = ["image_paths", "query_points", "analyze_images", "summarize", "statistics_table", "write_report"]

logger = logging.getLogger("gcnet.nonlocal_analysis")


def image_paths(inputs: Optional[Sequence[str]], dataset: Optional[str], num_images: int) -> List[str]:
    """The first ``num_images`` images of ``inputs`` (files, folders or globs) or, without
    them, of the registered ``dataset``. A bad value raises a ValueError naming its option."""
    if num_images < 1:
        raise ValueError(f"--num-images must be at least 1, got {num_images}")
    if inputs:
        return [path for path, _ in list_images(inputs)][:num_images]
    if dataset not in DatasetCatalog.list():
        raise ValueError(f"--dataset {dataset}: not a registered dataset")
    paths = [d["file_name"] for d in DatasetCatalog.get(dataset)][:num_images]
    if not paths:
        raise ValueError(f"--dataset {dataset}: it has no images")
    return paths


def query_points(count: int) -> List[Tuple[float, float]]:
    """``count`` query positions (fractions of height and width), the same for every image."""
    rng = np.random.default_rng(0)
    return [tuple(p) for p in rng.uniform(0.15, 0.85, size=(count, 2))]


def analyze_images(
    predictor,
    stats: NonLocalStatistics,
    paths: Sequence[str],
    output: Optional[str] = None,
    num_figures: int = 6,
    num_query_points: int = 3,
) -> None:
    """Run ``predictor``'s model (a :class:`gcnet.engine.Predictor`'s) on each image with the
    hooks of ``stats`` on; for the first ``num_figures`` images, write the attention maps of
    ``num_query_points`` query positions of each block to ``output`` (``<image>_<block>.png``)
    where it is given. An unreadable image is skipped with a warning."""
    points = query_points(num_query_points)
    with stats:
        for index, path in enumerate(tqdm.tqdm(paths, desc="non-local analysis", unit="image")):
            try:
                image = read_image(path, format="BGR")
            except ValueError as e:
                logger.warning(f"Skipped {e}")
                continue
            model_input = predictor.preprocess(image)
            stats.keep_attention = bool(output) and index < num_figures
            predictor.model([model_input])
            if stats.keep_attention:
                size = tuple(model_input["image"].shape[-2:])
                padded = padded_input_size(predictor.model, size)
                stem = os.path.splitext(os.path.basename(path))[0]
                for name, (weights, feature_size) in stats.attention.items():
                    rgb = image[:, :, ::-1].copy()
                    figure = query_attention_figure(rgb, weights[0], feature_size, size, padded, points)
                    write_image(os.path.join(output, f"{stem}_{name}.png"), figure)


def summarize(stats: NonLocalStatistics) -> Dict[str, dict]:
    """Per block: its instantiation, the number of images measured and the mean statistics."""
    return {
        name: dict(instantiation=stats.blocks[name].mode, images=stats.num_images(name), **values)
        for name, values in stats.results().items()
    }


def statistics_table(report: Dict[str, dict]) -> str:
    """Tables 1-4 style rows of a :func:`summarize` report: one per block, one column per
    statistic ("-" where it is undefined)."""
    lines = [
        "| block | instantiation | images | " + " | ".join(STATISTICS) + " |",
        "|---|---|---:|" + "---:|" * len(STATISTICS),
    ]
    for name, row in report.items():
        cells = [("-" if s not in row or math.isnan(row[s]) else f"{row[s]:.3f}") for s in STATISTICS]
        lines.append(f"| {name} | {row['instantiation']} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: Dict[str, dict], path: str) -> None:
    """The report as JSON at ``path``, written whole or not at all."""
    text = json.dumps(report, indent=2, allow_nan=True)
    atomic_write(path, lambda f: f.write(text.encode()))
