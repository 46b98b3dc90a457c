#!/usr/bin/env python
"""The non-local analysis of Section 3 on any model with non-local blocks.

    python projects/NonLocalAnalysis/analyze.py \\
        --config-file configs/COCO-InstanceSegmentation/ablations/mask_rcnn_R_50_FPN_syncbn_1nl_1x.py \\
        --dataset coco_2017_val --num-images 500 --output nl_analysis/ \\
        --opts train.init_checkpoint=output/model_final.pth

runs the model on the images (--input files, folders or globs, or the first --num-images of a
registered --dataset), prints one row per non-local block with the average cosine distances of
Tables 1-4 (input, key, query, prod, att, output), and writes them to
<output>/statistics.json with, for the first --num-figures images, the attention maps of
--query-points query positions (Fig. 2) as <output>/<image>_<block>.png.
"""
import argparse
import json
import logging
import math
import os
import sys

import numpy as np
import tqdm

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
from gcnet.analysis import padded_input_size
from gcnet.data import list_images, read_image, write_image
from gcnet.engine import Predictor, load_config
from gcnet.utils.file_io import atomic_write
from nonlocal_analysis import STATISTICS, NonLocalStatistics, query_attention_figure

logger = logging.getLogger("gcnet.nonlocal_analysis")


def table(results, counts, modes) -> str:
    """Tables 1-4 style rows: one per block, one column per statistic."""
    lines = [
        "| block | instantiation | images | " + " | ".join(STATISTICS) + " |",
        "|---|---|---:|" + "---:|" * len(STATISTICS),
    ]
    for name, values in results.items():
        cells = [("-" if s not in values or math.isnan(values[s]) else f"{values[s]:.3f}") for s in STATISTICS]
        lines.append(f"| {name} | {modes[name]} | {counts[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def query_points(count: int):
    """``count`` query positions (fractions of height and width), the same for every image."""
    rng = np.random.default_rng(0)
    return [tuple(p) for p in rng.uniform(0.15, 0.85, size=(count, 2))]


def image_paths(args):
    if args.input:
        return [path for path, _ in list_images(args.input)][: args.num_images]
    if args.dataset not in DatasetCatalog.list():
        raise ValueError(f"--dataset {args.dataset}: not a registered dataset")
    return [d["file_name"] for d in DatasetCatalog.get(args.dataset)][: args.num_images]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH", help="image files, folders or globs")
    source.add_argument("--dataset", metavar="NAME", help="a registered dataset, e.g. coco_2017_val")
    parser.add_argument("--num-images", type=int, default=100, help="analyse at most this many images")
    parser.add_argument("--output", metavar="DIR", help="folder for statistics.json and the figures")
    parser.add_argument("--num-figures", type=int, default=6, help="images to draw attention maps for (Fig. 2: 6)")
    parser.add_argument("--query-points", type=int, default=3, help="query positions per figure (Fig. 2: 3)")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    setup_logger(name="gcnet")
    try:
        if args.num_images < 1:
            raise ValueError(f"--num-images must be at least 1, got {args.num_images}")
        cfg = load_config(args.config_file, args.opts)
        paths = image_paths(args)
        if not paths:
            raise ValueError(f"--dataset {args.dataset}: it has no images")
        if args.output:
            os.makedirs(args.output, exist_ok=True)
        predictor = Predictor(cfg, device=args.device)
        stats = NonLocalStatistics(predictor.model)
    except (ValueError, OSError) as e:
        print(f"analyze: {e}", file=sys.stderr)
        return 2

    points = query_points(args.query_points)
    with stats:
        for index, path in enumerate(tqdm.tqdm(paths, desc="non-local analysis", unit="image")):
            try:
                image = read_image(path, format="BGR")
            except ValueError as e:
                logger.warning(f"Skipped {e}")
                continue
            model_input = predictor.preprocess(image)
            stats.keep_attention = bool(args.output) and index < args.num_figures
            predictor.model([model_input])
            if stats.keep_attention:
                size = tuple(model_input["image"].shape[-2:])
                padded = padded_input_size(predictor.model, size)
                stem = os.path.splitext(os.path.basename(path))[0]
                for name, (weights, feature_size) in stats.attention.items():
                    figure = query_attention_figure(image[:, :, ::-1].copy(), weights[0], feature_size, size, padded, points)
                    write_image(os.path.join(args.output, f"{stem}_{name}.png"), figure)

    results = stats.results()
    counts = {name: stats.num_images(name) for name in results}
    modes = {name: block.mode for name, block in stats.blocks.items()}
    print(table(results, counts, modes))
    if args.output:
        report = {name: dict(instantiation=modes[name], images=counts[name], **values) for name, values in results.items()}
        text = json.dumps(report, indent=2, allow_nan=True)
        atomic_write(os.path.join(args.output, "statistics.json"), lambda f: f.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
