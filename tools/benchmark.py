#!/usr/bin/env python
"""Speed of the GC block next to its peers, and of GCNet models next to their baselines.

    python tools/benchmark.py blocks [--device cuda] [--dtypes float32 bfloat16] [--layouts contiguous channels_last]
    python tools/benchmark.py models [--device cuda] [--pairs mask_rcnn cityscapes] [--modes train] [--iters 10]
    python tools/benchmark.py inference --image photo.jpg [--threads 1 2] [--rounds 3] [--ways eager ONNX]
    python tools/benchmark.py precision --image photo.jpg ... [--config-file CONFIG --opts train.init_checkpoint=...]

blocks: the forward and forward+backward medians of gcnet's ContextBlock (r16), mmcv's and
timm's GC blocks, an SE-style block, the NL and SNL blocks at the c2-c5 shapes of an 800x1216
image, batch 2, each also as a multiple of gcnet's (on CUDA, gcnet's forward over the time of
one read and one write of x at the device's copy bandwidth).

models: Mask R-CNN R50-FPN without and with GC r16 in c3-c5, and the Cityscapes ResNet-101
FCN against the GC head: inference latency per image, training iteration time at 2 images,
peak memory and the bytes saved for backward, each measured in a fresh process.

inference: Mask R-CNN R50-FPN without and with GC r16 (with the baseline's weights) on one photo,
per image, before and after the inference fast path: eager, channels_last, compiled, ONNX
(onnxruntime) and TorchScript, at each number of --threads, interleaved; each way's detections
are checked against those of the model before (gcnet.apps.inference_benchmark).

precision: the detections of bfloat16 inference against float32 on photos (pairs, box and
mask IoU, score differences).

On Linux the script runs with malloc settings that keep freed memory (as a CUDA run or
jemalloc/tcmalloc would); --system-malloc measures with glibc's defaults. The measurements are
gcnet.analysis.benchmark's; tools/README.md gives figures.
"""

import argparse
import logging
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PAIRS = {
    "mask_rcnn": (
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py",
    ),
    "cityscapes": (
        "configs/Cityscapes-SemanticSegmentation/fcn_R_101_D8_769x769_60k.py",
        "configs/Cityscapes-SemanticSegmentation/gc_head_R_101_D8_769x769_60k.py",
    ),
}


def add_blocks(commands) -> argparse.ArgumentParser:
    blocks = commands.add_parser("blocks", help="the GC block and its peers, at the c2-c5 shapes")
    blocks.add_argument(
        "--dtypes",
        nargs="+",
        choices=["float32", "bfloat16", "float16"],
        default=["float32"],
        help="dtypes of the inputs and blocks (default: float32)",
    )
    blocks.add_argument(
        "--layouts",
        nargs="+",
        choices=["contiguous", "channels_last"],
        default=["contiguous"],
        help="memory formats of the inputs (default: contiguous)",
    )
    blocks.add_argument(
        "--min-run-time",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds of timing per measurement (default: 1)",
    )
    blocks.add_argument(
        "--max-attention-gb",
        type=float,
        default=4.0,
        metavar="GB",
        help="skip the NL block where its N_p x N_p attention is larger (default: 4)",
    )
    return blocks


def add_models(commands) -> argparse.ArgumentParser:
    models = commands.add_parser("models", help="GCNet models against their baselines")
    models.add_argument(
        "--pairs",
        nargs="+",
        choices=sorted(MODEL_PAIRS),
        default=sorted(MODEL_PAIRS),
        help="the model pairs: mask_rcnn (R50-FPN, GC r16 c3-c5), cityscapes (FCN, GC head)",
    )
    models.add_argument(
        "--modes",
        nargs="+",
        choices=["inference", "train"],
        default=["inference", "train"],
        help="inference (1 image, no gradients) and/or train (2 images, SGD step)",
    )
    models.add_argument("--iters", type=int, default=10, help="measured iterations, after one warm-up (default: 10)")
    models.add_argument(
        "--det-size",
        nargs=2,
        type=int,
        default=[800, 1216],
        metavar=("H", "W"),
        help="input size of the mask_rcnn pair (default: 800 1216)",
    )
    models.add_argument(
        "--seg-size",
        nargs=2,
        type=int,
        default=[769, 769],
        metavar=("H", "W"),
        help="input size of the cityscapes pair (default: 769 769)",
    )
    models.add_argument("--channels-last", action="store_true", help="models in channels_last memory format")
    return models


def add_inference(commands) -> argparse.ArgumentParser:
    inference = commands.add_parser("inference", help="a whole detector before and after the fast path, exported")
    inference.add_argument("--image", required=True, metavar="FILE", help="the photo (resized as the test loader does)")
    inference.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts (default: 1 2)")
    inference.add_argument(
        "--rounds", type=int, default=3, help="interleaved timed rounds, the fastest kept (default: 3)"
    )
    inference.add_argument(
        "--ways",
        nargs="+",
        metavar="WAY",
        help="a subset of the ways, the first the reference (default: all, from 'before: eager')",
    )
    inference.add_argument(
        "--exports",
        default="output/inference_benchmark",
        metavar="DIR",
        help="folder for the exported models, reused when there (default: output/inference_benchmark)",
    )
    return inference


def add_precision(commands) -> argparse.ArgumentParser:
    precision = commands.add_parser("precision", help="bfloat16 inference against float32, on photos")
    precision.add_argument("--image", nargs="+", required=True, metavar="FILE", help="photos")
    precision.add_argument("--config-file", default=MODEL_PAIRS["mask_rcnn"][1], metavar="FILE")
    precision.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return precision


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{blocks,models,inference,precision}")
    blocks, models, inference, precision = (
        add(commands) for add in (add_blocks, add_models, add_inference, add_precision)
    )
    for sub in (blocks, models, inference, precision):
        sub.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
        if sub is not inference:
            sub.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads; default: torch's)")
        sub.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc settings")
    return parser


def fast_path(args: argparse.Namespace, device: str) -> int:
    from gcnet.apps import inference_benchmark as bench

    if args.command == "precision":
        from gcnet.engine import load_config

        cfg = load_config(os.path.join(REPO_ROOT, args.config_file), args.opts)
        print(bench.precision_table(bench.precision_rows(cfg, args.image, device)))
        return 0
    baseline, gc = (os.path.join(REPO_ROOT, c) for c in MODEL_PAIRS["mask_rcnn"])
    models = {"R50-FPN": (baseline, ""), "GC r16 R50-FPN": (gc, baseline)}
    rows = bench.inference_rows(models, args.image, args.threads, args.rounds, args.ways or bench.WAYS, args.exports)
    print(bench.inference_table(rows))
    return 0


def main(args: argparse.Namespace) -> int:
    import torch

    from gcnet.analysis import benchmark

    progress = logging.getLogger(benchmark.__name__)  # each row as it is measured, on stderr
    progress.addHandler(logging.StreamHandler())
    progress.setLevel(logging.INFO)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.command != "inference" and args.threads:
        torch.set_num_threads(args.threads)
    print(f"{benchmark.environment(device)}\n")
    if args.command == "blocks":
        timing = dict(min_run_time=args.min_run_time, max_attention_gb=args.max_attention_gb)
        print(benchmark.block_table(benchmark.block_rows(torch.device(device), args.dtypes, args.layouts, **timing)))
        return 0
    if args.command in ("inference", "precision"):
        return fast_path(args, device)
    pairs = {name: tuple(os.path.join(REPO_ROOT, c) for c in MODEL_PAIRS[name]) for name in args.pairs}
    sizes = {name: args.seg_size if name == "cityscapes" else args.det_size for name in args.pairs}
    rows = benchmark.model_rows(pairs, sizes, args.modes, args.iters, device, args.channels_last, args.threads)
    print(benchmark.model_table(rows))
    return 0


if __name__ == "__main__":
    arguments = get_parser().parse_args()  # --help and bad options are answered before the slow imports
    from gcnet.utils.known_warnings import filter_known_warnings

    filter_known_warnings()
    from gcnet.analysis.benchmark import restart_with_caching_malloc

    restart_with_caching_malloc(arguments.system_malloc)
    sys.exit(main(arguments))
