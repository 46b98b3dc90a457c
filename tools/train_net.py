#!/usr/bin/env python
"""Train or evaluate a GCNet LazyConfig with detectron2.

Train (8 GPUs):
    python tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py --num-gpus 8

Evaluate a run's last checkpoint (in train.output_dir), or any checkpoint:
    python tools/train_net.py --config-file <config> --eval-only
    python tools/train_net.py --config-file <config> --eval-only train.init_checkpoint=<path or gcnet://name>

Resume an interrupted run from the last checkpoint in train.output_dir:
    python tools/train_net.py --config-file <config> --num-gpus 8 --resume

Two machines (run on each, with its --machine-rank):
    python tools/train_net.py --config-file <config> --num-gpus 8 --num-machines 2 \\
        --machine-rank 0 --dist-url tcp://<ip of machine 0>:<port>

Any config key can be changed with key=value arguments after the options.
"""
import argparse
import contextlib
import datetime
import errno
import logging
import os
import sys

from gcnet.utils.known_warnings import filter_known_warnings


def parse_args(argv=None) -> argparse.Namespace:
    """detectron2's ``default_argument_parser`` options (built here without importing
    detectron2, so that --help answers at once), and ours."""
    parser = argparse.ArgumentParser(epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in train.output_dir")
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument("--num-gpus", type=int, default=1, help="number of gpus *per machine*")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14  # as detectron2's
    parser.add_argument(
        "--dist-url", default=f"tcp://127.0.0.1:{port}", help="initialization URL for pytorch distributed backend"
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=30,
        help="minutes a worker waits for the others in a collective before failing (a dead "
        "worker on another machine then stops the run instead of hanging it)",
    )
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
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None, help="config overrides: path.key=value")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # --help and bad options are answered before the slow imports below
    filter_known_warnings()

import torch
from omegaconf import ListConfig

from detectron2.config import instantiate
from detectron2.engine import hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter, TensorboardXWriter
from detectron2.utils.file_io import PathManager

import gcnet.model_zoo  # noqa: F401  (registers gcnet://)
import gcnet.modeling  # noqa: F401  (registers the backbones)
from gcnet.data import ImageNamingMapper, UnreadableImageError, require_datasets
from gcnet.engine import (
    BestCheckpointer,
    GCNetCheckpointer,
    GCNetTrainer,
    GuardedPeriodicCheckpointer,
    LossGuard,
    launch,
    load_config,
)
from gcnet.engine.run_setup import describe_model, setup_run
from gcnet.engine.writers import ProgressPrinter, progress_period, trim_metrics
from gcnet.utils.download import DownloadError
from gcnet.utils.run_lock import FolderInUseError, lock_folder

logger = logging.getLogger("detectron2")


@contextlib.contextmanager
def exit_on_bad_input():
    """Report a bad config file, option, dataset or checkpoint, or a download that cannot be
    made, in one line, without a traceback."""
    try:
        yield
    except (FileNotFoundError, ValueError, DownloadError) as e:
        sys.exit(f"train_net: {e}")
    except AssertionError as e:  # detectron2's loader asserts on a dataset left empty
        if "is empty" not in str(e) and "No valid data" not in str(e):
            raise
        sys.exit(
            f"train_net: {e} Every image was filtered out: images without usable annotations are dropped "
            "(dataloader.train.dataset.filter_empty=False keeps them), or the dataset lists none"
        )


# Faults of a running training that end it with one line (and no traceback from detectron2's
# loop): a full disk, an image that cannot be decoded, a loss guard that gives up.
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _reported_fault(error: BaseException) -> bool:
    disk_full = isinstance(error, OSError) and error.errno in DISK_FULL
    return disk_full or isinstance(error, (UnreadableImageError, FloatingPointError))


class _DropReportedFaults(logging.Filter):
    """Drops detectron2's "Exception during training" traceback of a fault train_net reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _reported_fault(record.exc_info[1]))


logging.getLogger("detectron2.engine.train_loop").addFilter(_DropReportedFaults())


@contextlib.contextmanager
def exit_on_fault(output_dir: str):
    """End the run with one line on a fault it cannot go on after, saying what is kept."""
    try:
        yield
    except Exception as e:
        if not _reported_fault(e):
            raise
        last = os.path.join(output_dir, "last_checkpoint")
        kept = "no checkpoint was written yet"
        if os.path.isfile(last):
            with open(last) as f:
                kept = f"the last complete checkpoint is {os.path.join(output_dir, f.read().strip())} (--resume continues from it)"
        if isinstance(e, OSError):
            what = f"writing {e.filename or 'to ' + output_dir} failed ({e.strerror}): make room"
        else:  # a data loader worker's error arrives with its traceback, the message last
            lines = str(e).strip().splitlines()
            what = lines[-1].split("Error: ", 1)[-1] if len(lines) > 1 else lines[0]
        sys.exit(f"train_net: {what}; {kept}")


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    with exit_on_bad_input():
        data_loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, data_loader, instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def wrap_ddp(model, cfg):
    """detectron2's ``create_ddp_model``, which also works for CPU (gloo) workers."""
    kwargs = dict(cfg.train.ddp)
    if not cfg.train.device.startswith("cuda"):
        kwargs["device_ids"] = None  # DDP takes device_ids for GPU modules only
    return create_ddp_model(model, **kwargs)


def build_trainer(cfg, model, data_loader, optimizer) -> GCNetTrainer:
    train = cfg.train
    amp_dtype = None
    if train.amp.enabled:
        if train.device.startswith("cuda"):
            amp_dtype = getattr(torch, train.amp.get("precision", "float16"))
        else:
            logger.warning(f"train.amp.enabled needs CUDA; training in fp32 on {train.device}")
    clip = train.get("clip_grad", {})
    guard = train.get("loss_guard")
    return GCNetTrainer(
        model,
        data_loader,
        optimizer,
        amp_dtype=amp_dtype,
        clip_grad_norm=clip.max_norm if clip.get("enabled", False) else None,
        loss_guard=LossGuard(**guard) if guard else None,
    )


def build_model(cfg):
    """The model on ``train.device``, in channels_last memory format with
    ``train.channels_last`` (faster convolutions on tensor-core GPUs)."""
    with exit_on_bad_input():  # a bad backbone option, ImageNet weights that cannot be found
        model = instantiate(cfg.model)
    model.to(cfg.train.device)
    if cfg.train.get("channels_last", False):
        model.to(memory_format=torch.channels_last)
    return model


def build_train_loader(cfg):
    """``cfg.dataloader.train``, whose mapper names the image it fails on
    (:class:`gcnet.data.ImageNamingMapper`). The config is left as it was (other keys, such
    as the test mapper's, refer to the train mapper's)."""
    loader = cfg.dataloader.train
    if "mapper" not in loader:
        return instantiate(loader)
    mapper = loader.mapper
    loader.mapper = ImageNamingMapper(instantiate(mapper))
    try:
        return instantiate(loader)
    finally:
        loader.mapper = mapper


def do_train(args, cfg):
    model = build_model(cfg)
    describe_model(model, cfg.train.output_dir, verbose=args.verbose)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    with exit_on_bad_input():
        train_loader = build_train_loader(cfg)

    model = wrap_ddp(model, cfg)
    trainer = build_trainer(cfg, model, train_loader, optimizer)
    checkpointer = GCNetCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.checkpointer = checkpointer
    best = cfg.train.get("best_checkpoint", {})
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            GuardedPeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            BestCheckpointer(cfg.train.eval_period, checkpointer, best.metric, mode=best.mode)
            if comm.is_main_process() and best.get("metric") and "evaluator" in cfg.dataloader
            else None,
        ]
    )
    resumed = args.resume and checkpointer.has_checkpoint()
    with exit_on_bad_input():
        if resumed and args.restart_schedule:  # the weights only
            checkpointer.load(checkpointer.get_checkpoint_file(), checkpointables=[])
        else:
            checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if not resumed:
        refuse_unfilled_model(checkpointer, cfg.train.init_checkpoint, partly=True)
    # A checkpoint stores the iteration that just finished.
    start_iter = trainer.iter + 1 if resumed and not args.restart_schedule else 0
    if comm.is_main_process():
        trainer.register_hooks(writer_hooks(cfg, start_iter))
    with exit_on_fault(cfg.train.output_dir):
        trainer.train(start_iter, cfg.train.max_iter)


def _is_local(path: str) -> bool:
    return bool(path) and ("://" not in path or path.startswith("file://"))


def check_before_building(args, cfg) -> None:
    """What can be checked before the model is built, in one line each: the output folder
    (:func:`check_output_dir`), a local initial checkpoint, and overrides that a resumed
    checkpoint would silently undo."""
    output_dir = cfg.train.output_dir
    check_output_dir(output_dir, lock=not args.eval_only and comm.is_main_process())
    has_checkpoint = PathManager.exists(os.path.join(output_dir, "last_checkpoint"))
    checkpoint = cfg.train.init_checkpoint
    # --eval-only reads it when given on the command line or when the run has no checkpoint
    # (eval_only_checkpoint); training, unless it resumes from the run's checkpoint.
    if args.eval_only:
        needed = overridden(args, "train.init_checkpoint") or not has_checkpoint
    else:
        needed = not (args.resume and has_checkpoint)
    if needed and _is_local(checkpoint) and not os.path.isfile(checkpoint.replace("file://", "", 1)):
        sys.exit(f"train_net: train.init_checkpoint {checkpoint}: no such file")
    undone = [o for o in args.opts if o.split("=", 1)[0].strip().startswith(("optimizer.", "lr_multiplier."))]
    if args.resume and not args.eval_only and has_checkpoint and undone and not args.restart_schedule:
        sys.exit(
            f"train_net: --resume restores the optimizer and the learning-rate schedule of the checkpoint in "
            f"{output_dir}, which would undo {' '.join(undone)}; drop the override, or add --restart-schedule to "
            "start a new schedule with it from the checkpoint's weights"
        )


def check_output_dir(output_dir: str, lock: bool) -> None:
    """A local output folder is created and writable and, with ``lock``, not in use by a live
    run (:func:`gcnet.utils.run_lock.lock_folder`); one of another ``PathManager`` handler
    (``<scheme>://...``) is left to it."""
    if "://" in output_dir:
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f"train_net: train.output_dir {output_dir} cannot be created: {e.strerror}")
    if not os.access(output_dir, os.W_OK | os.X_OK):
        sys.exit(f"train_net: train.output_dir {output_dir} is not writable")
    if lock:
        try:
            lock_folder(output_dir)
        except FolderInUseError as e:
            sys.exit(f"train_net: train.output_dir {e}")


def writer_hooks(cfg, start_iter: int) -> list:
    """Progress lines on the console (every iteration's call decides whether to print), and
    metrics.json and TensorBoard events every ``train.log_period`` iterations; metrics.json
    first loses the entries of the iterations this run does again."""
    train = cfg.train
    removed = trim_metrics(train.output_dir, start_iter - 1)
    if removed:
        logger.info(f"metrics.json: removed {removed} entries past iteration {start_iter - 1}, written again by this run")
    printer = ProgressPrinter(train.max_iter, progress_period(train.max_iter, train.log_period))
    files = [JSONWriter(os.path.join(train.output_dir, "metrics.json")), TensorboardXWriter(train.output_dir)]
    return [hooks.PeriodicWriter([printer], period=1), hooks.PeriodicWriter(files, period=train.log_period)]


def dataset_names(cfg, train: bool) -> list:
    """The dataset names of the config's test loader (with an evaluator) and train loader."""
    names = []
    for split, wanted in (("train", train), ("test", "evaluator" in cfg.dataloader)):
        dataset = cfg.dataloader.get(split, {}).get("dataset", {})
        given = dataset.get("names", []) if wanted else []
        if isinstance(given, str):
            names.append(given)
        elif isinstance(given, ListConfig):  # not a LazyCall that registers its datasets
            names += [name for name in given if isinstance(name, str)]
    return names


def overridden(args, key: str) -> bool:
    """Whether ``key`` was set on the command line."""
    return any(opt.split("=", 1)[0].strip() == key for opt in args.opts)


def eval_only_checkpoint(args, cfg, checkpointer: GCNetCheckpointer) -> str:
    """What --eval-only evaluates, said in one line: ``train.init_checkpoint`` given on the
    command line, else the run's last checkpoint in ``train.output_dir`` (required with
    --resume), else the config's ``train.init_checkpoint``."""
    if overridden(args, "train.init_checkpoint"):
        path, source = cfg.train.init_checkpoint, "train.init_checkpoint"
    elif checkpointer.has_checkpoint():
        path, source = checkpointer.get_checkpoint_file(), f"the last checkpoint of {cfg.train.output_dir}"
    elif args.resume:
        sys.exit(
            f"train_net: --eval-only --resume: no checkpoint in {cfg.train.output_dir} (no last_checkpoint "
            "file); train first, or give train.init_checkpoint=<file>"
        )
    else:
        path, source = cfg.train.init_checkpoint, f"the config's train.init_checkpoint: no checkpoint in {cfg.train.output_dir}"
    if not path:
        logger.warning(f"Evaluating random weights ({source} is empty)")
    elif source.startswith("the config's"):
        logger.warning(f"Evaluating {path} ({source})")
    else:
        logger.info(f"Evaluating {path} ({source})")
    return path


def main(args):
    with exit_on_bad_input():
        cfg = load_config(args.config_file, args.opts)
    check_before_building(args, cfg)
    with exit_on_fault(cfg.train.output_dir):
        setup_run(cfg, args, verbose=args.verbose)
    with exit_on_bad_input():  # the datasets are on disk, before any model is built
        require_datasets(dataset_names(cfg, train=not args.eval_only))
    if args.eval_only:
        model = wrap_ddp(build_model(cfg), cfg)
        checkpointer = GCNetCheckpointer(model, cfg.train.output_dir)
        path = eval_only_checkpoint(args, cfg, checkpointer)
        with exit_on_bad_input():
            checkpointer.load(path)
        refuse_unfilled_model(checkpointer, path)
        return do_test(cfg, model)
    do_train(args, cfg)


def refuse_unfilled_model(checkpointer: GCNetCheckpointer, path: str, partly: bool = False) -> None:
    """A checkpoint of another model (another architecture, another number of classes):
    under --eval-only, one that leaves any parameter unfilled would be evaluated with random
    weights; for training (``partly``: ImageNet weights fill the backbone only), one that
    fills none of them."""
    unfilled = checkpointer.unfilled_parameters()
    total = len(checkpointer.model.state_dict())
    if path and unfilled and (not partly or not checkpointer.filled_parameters()):
        sys.exit(
            f"train_net: {path} does not fit the model of the config: {len(unfilled)} of its {total} parameters and "
            f"buffers are missing or of another shape in it ({', '.join(unfilled[:3])}{', ...' if len(unfilled) > 3 else ''}); "
            "evaluate it with the config it was trained with"
        )


def invoke_main(args) -> None:
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        timeout=datetime.timedelta(minutes=args.dist_timeout),
    )


if __name__ == "__main__":
    invoke_main(ARGS)
