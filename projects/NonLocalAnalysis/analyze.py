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
import os
import sys

from nonlocal_analysis import NonLocalStatistics, analyze_images, image_paths, statistics_table, summarize, write_report

from detectron2.utils.logger import setup_logger

import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
from gcnet.engine import Predictor, load_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's LazyConfig")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH", help="image files, folders or globs")
    source.add_argument("--dataset", metavar="NAME", help="a registered dataset, e.g. coco_2017_val")
    parser.add_argument("--num-images", type=int, default=100, help="analyse at most this many images")
    parser.add_argument("--output", metavar="DIR", help="folder for statistics.json and the figures")
    parser.add_argument("--num-figures", type=int, default=6, help="images to draw attention maps for (Fig. 2: 6)")
    parser.add_argument("--query-points", type=int, default=3, help="query positions per figure (Fig. 2: 3)")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="gcnet")
    try:
        cfg = load_config(args.config_file, args.opts)
        paths = image_paths(args.input, args.dataset, args.num_images)
        if args.output:
            os.makedirs(args.output, exist_ok=True)
        predictor = Predictor(cfg, device=args.device)
        stats = NonLocalStatistics(predictor.model)
    except (ValueError, OSError) as e:
        print(f"analyze: {e}", file=sys.stderr)
        return 2
    analyze_images(predictor, stats, paths, args.output, args.num_figures, args.query_points)
    report = summarize(stats)
    print(statistics_table(report))
    if args.output:
        write_report(report, os.path.join(args.output, "statistics.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
