#!/usr/bin/env python
"""Images/s of tools/predict.py against the demo's loop, on the same images and weights.

    python tools/benchmark_predict.py --input ../shared/data/tiny_coco/val2017 [--images 40] \\
        [--config-file configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py] [--weights FILE] [--opts ...]

Rows, each run in a fresh process on the first --images images of --input: the demo's loop
(what tools/demo.py does for each image, without the drawing), and predict.py at --batch-size 1
and 4 (--num-workers decoding processes) and with 2 processes (--num-gpus 2: on the CPU, two
processes over gloo that share the cores). gcnet.apps.prediction_benchmark says what is timed.
"""

import argparse
import os
import sys

from gcnet.utils.known_warnings import filter_known_warnings

QUICK_START = "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a folder of images")
    parser.add_argument("--images", type=int, default=40, help="how many of its images (default 40)")
    parser.add_argument("--config-file", default=QUICK_START, help=f"the model's config (default {QUICK_START})")
    parser.add_argument("--weights", help="a checkpoint of the config's model (default: random weights)")
    parser.add_argument("--num-workers", type=int, default=2, help="predict.py's decoding processes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda ... (default cpu)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def main(args) -> None:
    from gcnet.apps.prediction_benchmark import prediction_rows, prediction_table

    predict = os.path.join(os.path.dirname(os.path.abspath(__file__)), "predict.py")
    try:
        rows = prediction_rows(
            predict, args.input, args.images, args.config_file, args.opts, args.weights, args.num_workers, args.device
        )
    except (RuntimeError, ValueError) as e:
        sys.exit(f"benchmark_predict: {e}")
    print(f"{args.images} images of {args.input}, {args.config_file}, {args.device}, {os.cpu_count()} CPU cores\n")
    print(prediction_table(rows))


if __name__ == "__main__":
    ARGS = get_parser().parse_args()  # --help and bad options are answered before the slow imports
    filter_known_warnings()
    main(ARGS)
