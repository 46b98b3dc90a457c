#!/usr/bin/env python
"""Images/s of tools/predict.py against the demo's loop, on the same images and weights.

    python tools/benchmark_predict.py --input ../shared/data/tiny_coco/val2017 [--images 40] \\
        [--config-file configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py] [--weights FILE] [--opts ...]

Rows, each run in a fresh process on the first --images images of --input:

* demo loop   what tools/demo.py does for each image, without the drawing: read it, then
              gcnet.engine.Predictor on it, one image at a time in one process
* predict.py  --batch-size 1 and 4 (--num-workers decoding processes), and 2 processes
              (--num-gpus 2: on the CPU, two processes over gloo that share the cores)

"images/s" counts the prediction loop (from the first image to the last result written);
"wall s" the whole command, start-up (imports, model, weights) included. Without --weights the
model gets random weights, saved once for every row: a random detector keeps as many
instances as it may (100 an image), the most mask pasting and encoding.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from gcnet.utils.known_warnings import filter_known_warnings

QUICK_START = "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py"
PREDICT_RUNS = (
    ("predict.py --batch-size 1", ["--batch-size", "1"]),
    ("predict.py --batch-size 4", ["--batch-size", "4"]),
    ("predict.py --batch-size 1, 2 processes", ["--batch-size", "1", "--num-gpus", "2", "--dist-url", "auto"]),
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a folder of images")
    parser.add_argument("--images", type=int, default=40, help="how many of its images (default 40)")
    parser.add_argument("--config-file", default=QUICK_START)
    parser.add_argument("--weights", help="a checkpoint of the config's model (default: random weights)")
    parser.add_argument("--num-workers", type=int, default=2, help="predict.py's decoding processes (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--demo-loop", metavar="LIST", help=argparse.SUPPRESS)  # the demo row, in its own process
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


if __name__ == "__main__":
    ARGS = get_parser().parse_args()
    filter_known_warnings()

import torch

from detectron2.config import instantiate

import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
from gcnet.data import list_images, read_image
from gcnet.engine import GCNetCheckpointer, Predictor, load_config


def demo_loop(args) -> None:
    """The demo row, in this process: Predictor on each image of the file --demo-loop lists;
    prints the images and seconds of the loop as JSON."""
    with open(args.demo_loop) as f:
        paths = f.read().split()
    predictor = Predictor(load_config(args.config_file, args.opts), device=args.device)
    start = time.perf_counter()
    for path in paths:
        predictor(read_image(path, format="BGR"))
    print(json.dumps({"images": len(paths), "seconds": time.perf_counter() - start}))


def run_row(command) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark_predict: {' '.join(command[:1])} failed:\n{result.stderr[-2000:]}")
    found = re.search(r"Predicted (\d+) images in ([\d.]+) s", result.stdout)
    row = (
        {"images": int(found.group(1)), "seconds": float(found.group(2))}
        if found
        else json.loads(result.stdout.splitlines()[-1])
    )
    return dict(row, wall=wall)


def weights(args, folder: str) -> list:
    """--opts, with the weights of --weights, else random weights saved in ``folder``."""
    if args.weights:
        return [*args.opts, f"train.init_checkpoint={args.weights}"]
    torch.manual_seed(0)
    GCNetCheckpointer(instantiate(load_config(args.config_file, args.opts).model), save_dir=folder).save("random")
    return [*args.opts, f"train.init_checkpoint={os.path.join(folder, 'random.pth')}"]


def main(args) -> None:
    script = os.path.abspath(__file__)
    predict = os.path.join(os.path.dirname(script), "predict.py")
    with tempfile.TemporaryDirectory(prefix="gcnet-benchmark-") as tmp:
        paths = [path for path, _ in list_images([args.input])][: args.images]
        list_file = os.path.join(tmp, "images.txt")
        with open(list_file, "w") as f:
            f.write("\n".join(paths) + "\n")
        opts = weights(args, tmp)
        common = ["--config-file", args.config_file, "--device", args.device, *(["--opts", *opts] if opts else [])]
        rows = [
            (
                "demo loop (Predictor, one image at a time)",
                run_row([script, "--input", args.input, "--demo-loop", list_file, *common]),
            )
        ]
        for index, (label, options) in enumerate(PREDICT_RUNS):
            output = os.path.join(tmp, f"run{index}")
            command = [
                predict,
                "--input",
                list_file,
                "--output",
                output,
                "--num-workers",
                str(args.num_workers),
                *options,
            ]
            rows.append((label, run_row([*command, *common])))
    print(f"{len(paths)} images of {args.input}, {args.config_file}, {args.device}, {os.cpu_count()} CPU cores\n")
    print("| run | images/s | loop s | wall s |\n|---|---|---|---|")
    for label, row in rows:
        print(f"| {label} | {row['images'] / row['seconds']:.2f} | {row['seconds']:.1f} | {row['wall']:.1f} |")


if __name__ == "__main__":
    if ARGS.demo_loop:
        demo_loop(ARGS)
    else:
        main(ARGS)
