#!/usr/bin/env python
"""Parameters, FLOPs and activations of LazyConfig models, as the paper's tables report them.

    python tools/analyze_model.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_1x.py \\
        --compare configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py [--table]

prints one row per config (#params, FLOPs and activations, and their differences from the
first config, the baseline) as a Markdown table; --table adds fvcore's per-module table of
the first config. FLOPs are fvcore's (a fused multiply-add is one FLOP; BatchNorm one per
element; additions and activations are not counted), on a fixed workload per input size:
see gcnet.analysis.complexity, which counts them.
"""

import argparse
import os
import sys

from gcnet.utils.known_warnings import filter_known_warnings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model (the baseline of --compare)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="FILE", help="configs to compare with the first")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: 800 1280 for R-CNNs, 769 769 for segmentors, else 224 224)",
    )
    parser.add_argument("--num-box-rois", type=int, default=1000, help="RoIs of each R-CNN box head")
    parser.add_argument("--num-mask-rois", type=int, default=100, help="RoIs of each R-CNN mask head")
    parser.add_argument("--table", action="store_true", help="print the per-module table of the first config")
    parser.add_argument("--max-depth", type=int, default=4, help="module depth of --table")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="overrides of every config")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)  # --help and bad options are answered before the slow imports
    filter_known_warnings()
    from detectron2.config import instantiate
    from detectron2.utils.logger import setup_logger

    from gcnet.analysis import comparison_table, measure_complexity, paper_input_size
    from gcnet.engine import load_config

    setup_logger(name="fvcore")
    configs = [args.config_file] + args.compare
    try:
        if args.input_size and min(args.input_size) < 1:
            raise ValueError(f"--input-size must be positive, got {args.input_size}")
        loaded = [load_config(config, args.opts) for config in configs]  # all checked before any work
        results = []
        for config, cfg in zip(configs, loaded):
            model = instantiate(cfg.model).eval()
            height, width = args.input_size or paper_input_size(model)
            results.append(measure_complexity(model, height, width, args.num_box_rois, args.num_mask_rois))
            print(f"{config}: input {height}x{width}", file=sys.stderr)
    except ValueError as e:
        print(f"analyze_model: {e}", file=sys.stderr)
        return 2
    root = os.path.commonpath([os.path.dirname(os.path.abspath(c)) for c in configs])
    names = [os.path.splitext(os.path.relpath(os.path.abspath(c), root))[0] for c in configs]
    print("\n".join(comparison_table(names, results)))
    if args.table:
        print()
        print(results[0].table(args.max_depth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
