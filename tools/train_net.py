#!/usr/bin/env python
"""Train or evaluate a GCNet LazyConfig with detectron2.

Train (8 GPUs):
    python tools/train_net.py --num-gpus 8 \\
        --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py

Evaluate a run's last checkpoint (in train.output_dir), or any checkpoint:
    python tools/train_net.py --config-file <config> --eval-only
    python tools/train_net.py --config-file <config> --eval-only train.init_checkpoint=<path or gcnet://name>

Resume an interrupted run (Ctrl-C, SIGTERM, a crash) from the last checkpoint in train.output_dir:
    python tools/train_net.py --config-file <config> --num-gpus 8 --resume

Two machines (run on each, with its --machine-rank):
    python tools/train_net.py --config-file <config> --num-gpus 8 --num-machines 2 \\
        --machine-rank 0 --dist-url tcp://<ip of machine 0>:<port>

Any config key can be changed with key=value arguments, before or after the options.
"""

from gcnet.utils.argument_parser import default_argument_parser
from gcnet.utils.known_warnings import filter_known_warnings


def parse_args(argv=None):
    parser = default_argument_parser(__doc__)
    parser.add_argument(
        "--restart-schedule",
        action="store_true",
        help="with --resume: start from the last checkpoint's weights with a new optimizer and learning-rate "
        "schedule (those of the config and its overrides) from iteration 0, instead of restoring them",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print the environment, the full config and the model (always written to "
        "env.txt, config.yaml and model.txt in train.output_dir)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # --help and bad options are answered before the slow imports below
filter_known_warnings()  # also in the worker processes, which import this file under another name

from detectron2.utils import comm

import gcnet.model_zoo  # noqa: F401  (registers gcnet://)
import gcnet.modeling  # noqa: F401  (registers the backbones)
from gcnet.data import require_datasets
from gcnet.engine import TRAINING_KEYS, checkpoint_state, exit_on_bad_input, exit_on_stop, launch_from_args, load_config
from gcnet.engine.defaults import (
    build_model,
    build_optimizer,
    build_train_loader,
    build_trainer,
    check_before_building,
    dataset_names,
    default_hooks,
    evaluate,
    load_evaluated_checkpoint,
    load_training_checkpoint,
    prepare_for_evaluation,
    wrap_ddp,
    writer_hooks,
)
from gcnet.engine.run_setup import describe_classes, describe_model, describe_run, seed_run, setup_console, start_run

TOOL = "train_net"


def do_test(cfg, model):
    with exit_on_bad_input(TOOL):  # the test dataset
        return evaluate(cfg, model)


def do_train(args, cfg):
    with exit_on_bad_input(TOOL):  # a bad backbone option, a dataset, a checkpoint that does not fit
        model = build_model(cfg)
        describe_model(model)
        trainer = build_trainer(cfg, wrap_ddp(model, cfg), build_train_loader(cfg), build_optimizer(cfg, model))
        trainer.register_hooks(default_hooks(cfg, trainer, lambda: do_test(cfg, trainer.model)))
        start_iter = load_training_checkpoint(args, cfg, trainer.checkpointer)
    start_run(cfg, args, model, verbose=args.verbose)  # accepted: the output folder is written from here on
    if comm.is_main_process():
        trainer.register_hooks(writer_hooks(cfg, start_iter))
    with exit_on_stop(TOOL, "training", trainer.position, checkpoint_state(cfg.train.output_dir)):
        trainer.train(start_iter, cfg.train.max_iter)


def do_eval(args, cfg):
    with exit_on_bad_input(TOOL):
        model = build_model(cfg)
        describe_model(model)
        load_evaluated_checkpoint(args, cfg, model)
        prepare_for_evaluation(cfg, model)
        model = wrap_ddp(model, cfg)
    start_run(cfg, args, verbose=args.verbose)
    with exit_on_stop(TOOL, "evaluation", state=lambda: "no results were written; run the command again"):
        return do_test(cfg, model)


def main(args):
    setup_console(verbose=args.verbose)
    with exit_on_bad_input(TOOL):
        cfg = load_config(args.config_file, args.opts, required=TRAINING_KEYS)
        check_before_building(args, cfg)
        seed_run(cfg, args)
        describe_run(cfg, args)
        names = dataset_names(cfg, train=not args.eval_only)
        require_datasets(names)  # on disk, before any model is built
        describe_classes(names)
    if args.eval_only:
        return do_eval(args, cfg)
    do_train(args, cfg)


if __name__ == "__main__":
    with exit_on_stop(TOOL, "start-up"), exit_on_bad_input(TOOL):
        launch_from_args(main, ARGS)
