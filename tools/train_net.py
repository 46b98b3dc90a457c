#!/usr/bin/env python
"""Train or evaluate a GCNet LazyConfig with detectron2.

Train (8 GPUs):
    python tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py --num-gpus 8

Evaluate a checkpoint:
    python tools/train_net.py --config-file <config> --eval-only train.init_checkpoint=<path or gcnet://name>

Resume an interrupted run from the last checkpoint in train.output_dir:
    python tools/train_net.py --config-file <config> --num-gpus 8 --resume

Two machines (run on each, with its --machine-rank):
    python tools/train_net.py --config-file <config> --num-gpus 8 --num-machines 2 \\
        --machine-rank 0 --dist-url tcp://<ip of machine 0>:<port>

Any config key can be changed with key=value arguments after the options.
"""
import contextlib
import datetime
import errno
import logging
import os
import sys

import torch

from detectron2.config import instantiate
from detectron2.engine import default_argument_parser, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

import gcnet.data  # noqa: F401  (registers the builtin datasets)
import gcnet.model_zoo  # noqa: F401  (registers gcnet://)
import gcnet.modeling  # noqa: F401  (registers the backbones)
from gcnet.data import ImageNamingMapper, UnreadableImageError
from gcnet.engine import GCNetCheckpointer, GCNetTrainer, GuardedPeriodicCheckpointer, LossGuard, launch, load_config
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
    logger.info(f"Model:\n{model}")
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
            hooks.BestCheckpointer(cfg.train.eval_period, checkpointer, best.metric, mode=best.mode)
            if comm.is_main_process() and best.get("metric") and "evaluator" in cfg.dataloader
            else None,
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if comm.is_main_process()
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
    resumed = resumed and not args.restart_schedule
    with exit_on_fault(cfg.train.output_dir):
        trainer.train(trainer.iter + 1 if resumed else 0, cfg.train.max_iter)


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
    if _is_local(checkpoint) and not os.path.isfile(checkpoint.replace("file://", "", 1)):
        if args.eval_only or not (args.resume and has_checkpoint):
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


def main(args):
    with exit_on_bad_input():
        cfg = load_config(args.config_file, args.opts)
    check_before_building(args, cfg)
    with exit_on_fault(cfg.train.output_dir):
        default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="gcnet")
    if args.eval_only:
        model = wrap_ddp(build_model(cfg), cfg)
        checkpointer = GCNetCheckpointer(model)
        with exit_on_bad_input():
            checkpointer.load(cfg.train.init_checkpoint)
        refuse_unfilled_model(checkpointer, cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


def refuse_unfilled_model(checkpointer: GCNetCheckpointer, path: str, partly: bool = False) -> None:
    """A checkpoint of another model (another architecture, another number of classes):
    under --eval-only, one that leaves any parameter unfilled would be evaluated with random
    weights; for training (``partly``: ImageNet weights fill the backbone only), one that
    fills none of them."""
    unfilled = checkpointer.unfilled_parameters()
    total = len(checkpointer.model.state_dict())
    if path and unfilled and (not partly or len(unfilled) >= total):
        sys.exit(
            f"train_net: {path} does not fit the model of the config: {len(unfilled)} of its {total} parameters and "
            f"buffers are missing or of another shape in it ({', '.join(unfilled[:3])}{', ...' if len(unfilled) > 3 else ''}); "
            "evaluate it with the config it was trained with"
        )


def parse_args(argv=None):
    parser = default_argument_parser(epilog=__doc__)
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
    return parser.parse_args(argv)


def invoke_main() -> None:
    args = parse_args()
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
    invoke_main()
