#!/usr/bin/env python
"""Write a model's predictions for many images as files a program reads: COCO results JSON for
a detector, label-map PNGs for semantic segmentation, with an index of the images.

    python tools/predict.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco \\
        --input photos/ --output predictions/ --batch-size 4
    python tools/predict.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py \\
        --input paths.txt --output predictions/ --num-gpus 8 --opts train.init_checkpoint=output/model_final.pth

--input takes image files, folders (searched recursively), globs, text files of paths (.txt,
.lst, .list: one a line) or a COCO JSON (its images, with their ids; relative to --image-root).
predictions/ then holds predictions.json (COCO results: image_id, category_id of the model's
dataset, bbox, score, RLE segmentation), images.json (the images and categories) and
unreadable.json (the images that could not be read, with the reason); a semantic segmentation
model writes sem_seg/<shard>/<image id>.png instead of predictions.json.

The images are predicted in shards (--shard-size), each written at once: a run that is
stopped or killed continues where it was when the same command is run again, and ends with
the results an uninterrupted run writes. Several processes (--num-gpus) and machines
(--num-machines, --machine-rank, --dist-url, as train_net.py) share the shards; the output
folder must then be one that all machines see.
"""

from gcnet.utils.argument_parser import (
    DEFAULT_SHARD_SIZE,
    add_inference_arguments,
    add_launch_arguments,
    inference_overrides,
    one_line_parser,
)
from gcnet.utils.known_warnings import filter_known_warnings


def parse_args(argv=None):
    parser = one_line_parser(__doc__)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="a LazyConfig (.py or .yaml)")
    model.add_argument("--model", metavar="NAME", help="a model zoo name (python -m gcnet.model_zoo list)")
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH", help="images, folders, globs, lists or a COCO JSON"
    )
    parser.add_argument(
        "--image-root",
        metavar="DIR",
        help="the folder relative paths of a list or COCO JSON start from (default: the file's)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="the folder of the predictions")
    parser.add_argument("--batch-size", type=int, default=1, help="images per batch of each process (default 1)")
    parser.add_argument(
        "--num-workers",
        type=int,
        metavar="N",
        help="image decoding processes per process (default: the config's dataloader.test.num_workers)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.0,
        help="the lowest score of a written instance; for semantic segmentation, pixels whose highest class "
        "probability is lower get the index's ignore_label (default 0: all that the model outputs)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help=f"images per shard (default {DEFAULT_SHARD_SIZE})"
    )
    parser.add_argument("--device", help="cpu, cuda ... (default: the config's train.device, cuda if available)")
    add_launch_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.num_workers is not None and args.num_workers < 0:
        parser.error(f"--num-workers must be at least 0, got {args.num_workers}")
    return args


if __name__ == "__main__":
    ARGS = parse_args()  # --help and bad options are answered before the slow imports below
filter_known_warnings()  # also in the worker processes, which import this file under another name

import shlex
import sys
import tempfile

from gcnet.apps import model_config
from gcnet.engine import InferenceOptions, exit_on_bad_input, exit_on_stop, launch_from_args
from gcnet.engine.prediction import PredictionOptions, PredictionRun, plan_run, shard_state
from gcnet.engine.run_setup import setup_console

TOOL = "predict"


def prediction_config(args):
    """The config of the model, with the inference flags in its train.inference."""
    cfg = model_config(args.model, args.config_file, args.opts)
    cfg.train.inference = InferenceOptions.from_config(cfg, **inference_overrides(args)).to_dict()
    return cfg


def main(args, plan, images_file):
    setup_console()
    options = PredictionOptions(args.output, args.device, args.num_workers, shlex.join(["python", *sys.argv]))
    with exit_on_bad_input(TOOL):  # a checkpoint that does not fit, a folder the machines do not see
        run = PredictionRun(prediction_config(args), plan, images_file, options)
        run.start()
    with exit_on_stop(TOOL, "prediction", state=shard_state(args.output, plan)):
        run.predict()
        with exit_on_bad_input(TOOL):  # a shard missing: a folder the machines do not share
            run.finish()


if __name__ == "__main__":
    setup_console()
    with (
        exit_on_stop(TOOL, "start-up"),
        exit_on_bad_input(TOOL),
        tempfile.TemporaryDirectory(prefix="gcnet-predict-") as tmp,
    ):
        images_file = f"{tmp}/images.jsonl"
        plan, complete = plan_run(
            prediction_config(ARGS),
            ARGS.input,
            ARGS.output,
            images_file,
            image_root=ARGS.image_root,
            shard_size=ARGS.shard_size,
            batch_size=ARGS.batch_size,
            confidence_threshold=ARGS.confidence_threshold,
        )
        if complete:
            print(f"{TOOL}: nothing to do: the {plan.images} images of --input are predicted in {ARGS.output}")
            sys.exit(0)
        launch_from_args(main, ARGS, (plan, images_file))
