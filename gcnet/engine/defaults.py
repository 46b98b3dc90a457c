"""The pieces of a LazyConfig run that ``tools/train_net.py`` puts together, as detectron2's
``tools/lazyconfig_train_net.py`` builds them, with gcnet's additions: a trainer with its loss
guard and checkpointer, hooks that survive interruptions, checks of the input before anything
is built, and checkpoints that must fit the model they are loaded into."""

import logging
import os
from typing import Callable, List

import torch
from omegaconf import DictConfig, ListConfig

from detectron2.config import instantiate
from detectron2.engine import hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter, TensorboardXWriter

from gcnet.data import ImageNamingMapper
from gcnet.modeling import fold_batch_norms
from gcnet.utils.download import DownloadError

from .checkpoint import GCNetCheckpointer
from .hooks import BestCheckpointer, EvalHook, GuardedPeriodicCheckpointer
from .inference import InferenceOptions
from .interruption import stoppable
from .run_setup import check_output_dir
from .trainer import GCNetTrainer, LossGuard
from .writers import ProgressPrinter, progress_period, trim_metrics

__all__ = [
    "build_model",
    "build_optimizer",
    "build_train_loader",
    "build_trainer",
    "wrap_ddp",
    "default_hooks",
    "writer_hooks",
    "evaluate",
    "prepare_for_evaluation",
    "dataset_names",
    "check_before_building",
    "load_training_checkpoint",
    "evaluated_checkpoint",
    "load_evaluated_checkpoint",
]

logger = logging.getLogger("detectron2")


def build_model(cfg) -> torch.nn.Module:
    """``cfg.model`` on ``train.device``, in channels_last memory format with
    ``train.channels_last`` (faster convolutions on tensor-core GPUs)."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    if cfg.train.get("channels_last", False):
        model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``cfg.optimizer`` for the parameters of ``model`` (``optimizer.params.model``), leaving
    the config as it was (its ``config.yaml`` does not hold the model)."""
    params = cfg.optimizer.params
    given = params.get("model", None)
    params.model = model
    try:
        return instantiate(cfg.optimizer)
    finally:
        if given is None:
            del params["model"]
        else:
            params.model = given


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


def wrap_ddp(model: torch.nn.Module, cfg):
    """detectron2's ``create_ddp_model``, which also works for CPU (gloo) workers."""
    kwargs = dict(cfg.train.ddp)
    if not cfg.train.device.startswith("cuda"):
        kwargs["device_ids"] = None  # DDP takes device_ids for GPU modules only
    return create_ddp_model(model, **kwargs)


def build_trainer(cfg, model, data_loader, optimizer) -> GCNetTrainer:
    """A :class:`GCNetTrainer` of ``cfg.train`` (AMP on CUDA, gradient clipping, loss guard),
    with its checkpointer in ``train.output_dir`` as ``trainer.checkpointer``."""
    train = cfg.train
    amp_dtype = None
    if train.amp.enabled:
        if train.device.startswith("cuda"):
            amp_dtype = getattr(torch, train.amp.get("precision", "float16"))
        else:
            logger.warning(f"train.amp.enabled needs CUDA; training in fp32 on {train.device}")
    clip = train.get("clip_grad", {})
    guard = train.get("loss_guard")
    trainer = GCNetTrainer(
        model,
        data_loader,
        optimizer,
        amp_dtype=amp_dtype,
        clip_grad_norm=clip.max_norm if clip.get("enabled", False) else None,
        loss_guard=LossGuard(**guard) if guard else None,
    )
    trainer.checkpointer = GCNetCheckpointer(model, train.output_dir, trainer=trainer)
    return trainer


def default_hooks(cfg, trainer: GCNetTrainer, test: Callable[[], dict]) -> list:
    """Timing, the learning-rate schedule, periodic checkpoints, evaluation every
    ``train.eval_period`` iterations and at the end (``test()``), and the best checkpoint of
    ``train.best_checkpoint.metric``: registered before a checkpoint is loaded, so that a
    resume restores their state."""
    best = cfg.train.get("best_checkpoint", {})
    main = comm.is_main_process()
    return [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        GuardedPeriodicCheckpointer(trainer.checkpointer, **cfg.train.checkpointer) if main else None,
        EvalHook(cfg.train.eval_period, test),
        BestCheckpointer(cfg.train.eval_period, trainer.checkpointer, best.metric, mode=best.get("mode", "max"))
        if main and best.get("metric") and "evaluator" in cfg.dataloader
        else None,
    ]


def writer_hooks(cfg, start_iter: int) -> list:
    """Progress lines on the console (every iteration's call decides whether to print), and
    metrics.json and TensorBoard events every ``train.log_period`` iterations; metrics.json
    first loses the entries of the iterations this run does again."""
    train = cfg.train
    removed = trim_metrics(train.output_dir, start_iter - 1)
    if removed:
        logger.info(
            f"metrics.json: removed {removed} entries past iteration {start_iter - 1}, written again by this run"
        )
    printer = ProgressPrinter(train.max_iter, progress_period(train.max_iter, train.log_period))
    files = [JSONWriter(os.path.join(train.output_dir, "metrics.json")), TensorboardXWriter(train.output_dir)]
    return [hooks.PeriodicWriter([printer], period=1), hooks.PeriodicWriter(files, period=train.log_period)]


def prepare_for_evaluation(cfg, model: torch.nn.Module) -> int:
    """Put a model whose weights are loaded in eval mode and, unless
    ``train.inference.fold_norm`` is False, fold each fixed BatchNorm into its conv (exact;
    README "Performance"); before it is wrapped for distributed evaluation. Returns the number
    of BatchNorms folded."""
    model.eval()
    if not InferenceOptions.from_config(cfg).fold_norm:
        return 0
    folded = fold_batch_norms(model)
    logger.info(f"Folded {folded} BatchNorms into their convs (train.inference.fold_norm=False keeps them)")
    return folded


def evaluate(cfg, model) -> dict:
    """The results of ``cfg.dataloader.evaluator`` on ``cfg.dataloader.test`` (printed), or {}
    for a config without an evaluator. A stop signal ends it at the next batch."""
    if "evaluator" not in cfg.dataloader:
        return {}
    loader = stoppable(instantiate(cfg.dataloader.test))
    results = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def dataset_names(cfg, train: bool) -> List[str]:
    """The dataset names of the config's test loader (with an evaluator) and train loader. A
    LazyCall that registers its datasets (``gcnet.data.register_custom_dataset``) is called:
    registering again later does nothing."""
    names = []
    for split, wanted in (("train", train), ("test", "evaluator" in cfg.dataloader)):
        dataset = cfg.dataloader.get(split, {}).get("dataset", {})
        given = dataset.get("names", []) if wanted else []
        if isinstance(given, DictConfig) and "_target_" in given:
            given = instantiate(given)
        if isinstance(given, str):
            names.append(given)
        elif isinstance(given, (ListConfig, list, tuple)):
            names += [name for name in given if isinstance(name, str)]
    return names


def _overridden(args, key: str) -> bool:
    """Whether ``key`` was set on the command line."""
    return any(opt.split("=", 1)[0].strip() == key for opt in args.opts)


def _is_local(path: str) -> bool:
    return bool(path) and ("://" not in path or path.startswith("file://"))


def check_before_building(args, cfg) -> None:
    """What can be checked before the model is built: the output folder
    (:func:`gcnet.engine.run_setup.check_output_dir`), a local initial checkpoint, the
    inference options (``train.inference``), and overrides that a resumed checkpoint would
    silently undo; then the folder is locked when it exists and the run trains.

    Raises:
        ValueError: naming the key, file or option and the way out.
    """
    InferenceOptions.from_config(cfg)
    output_dir = cfg.train.output_dir
    check_output_dir(output_dir, lock=False)
    has_checkpoint = os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
    checkpoint = cfg.train.init_checkpoint
    # --eval-only reads it when given on the command line or when the run has no checkpoint
    # (load_evaluated_checkpoint); training, unless it resumes from the run's checkpoint.
    if args.eval_only:
        needed = _overridden(args, "train.init_checkpoint") or not has_checkpoint
    else:
        needed = not (args.resume and has_checkpoint)
    if needed and _is_local(checkpoint) and not os.path.isfile(checkpoint.replace("file://", "", 1)):
        raise ValueError(f"train.init_checkpoint {checkpoint}: no such file")
    undone = [o for o in args.opts if o.split("=", 1)[0].strip().startswith(("optimizer.", "lr_multiplier."))]
    if args.resume and not args.eval_only and has_checkpoint and undone and not args.restart_schedule:
        raise ValueError(
            f"--resume restores the optimizer and the learning-rate schedule of the checkpoint in {output_dir}, "
            f"which would undo {' '.join(undone)}; drop the override, or add --restart-schedule to start a new "
            "schedule with it from the checkpoint's weights"
        )
    check_output_dir(output_dir, lock=not args.eval_only and comm.is_main_process())


def load_training_checkpoint(args, cfg, checkpointer: GCNetCheckpointer) -> int:
    """Load what a training run starts from, and return its first iteration: with
    ``--resume``, the last checkpoint of ``train.output_dir`` (all of it, or its weights alone
    with ``--restart-schedule``), which must fit the model entirely; else (or when the folder
    has none) ``train.init_checkpoint``, which must fit as an initialisation does
    (:data:`gcnet.engine.checkpoint.FIT_RULES`), or in any part with
    ``train.init_checkpoint_partial=True``.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit the config's model.
        DownloadError: ``train.init_checkpoint`` cannot be downloaded; the message also says how
            to train without it.
    """
    output_dir = cfg.train.output_dir
    resumed = args.resume and checkpointer.has_checkpoint()
    fit = "any" if cfg.train.get("init_checkpoint_partial", False) else "init"
    if not resumed:
        way_out = "give the checkpoint of this architecture, or train.init_checkpoint_partial=True to load what fits"
        try:
            checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume, fit=fit, way_out=way_out)
        except DownloadError as e:
            raise e.with_way_out(
                f'{e.way_out.rstrip(".")}; to train without these weights: train.init_checkpoint="" with a lower '
                "optimizer.lr (random weights diverge at fine-tuning rates)"
            ) from e
        return 0
    config = os.path.join(output_dir, "config.yaml")
    way_out = f"resume with the config of that run ({config}), or train in another train.output_dir"
    if args.restart_schedule:  # the weights only
        checkpointer.load(checkpointer.get_checkpoint_file(), checkpointables=[], fit="all", way_out=way_out)
        return 0
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=True, way_out=way_out)
    return checkpointer.checkpointables["trainer"].iter + 1  # a checkpoint stores the iteration that just finished


def evaluated_checkpoint(args, cfg, last_checkpoint: str) -> str:
    """What ``--eval-only`` evaluates, said in one line: ``train.init_checkpoint`` given on the
    command line, else the run's ``last_checkpoint`` in ``train.output_dir`` ("" if none;
    required with ``--resume``), else the config's ``train.init_checkpoint``.

    Raises:
        ValueError: ``--resume`` without a checkpoint in the folder.
    """
    if _overridden(args, "train.init_checkpoint"):
        path, source = cfg.train.init_checkpoint, "train.init_checkpoint"
    elif last_checkpoint:
        path, source = last_checkpoint, f"the last checkpoint of {cfg.train.output_dir}"
    elif args.resume:
        raise ValueError(
            f"--eval-only --resume: no checkpoint in {cfg.train.output_dir} (no last_checkpoint file); train first, "
            "or give train.init_checkpoint=<file>"
        )
    else:
        path = cfg.train.init_checkpoint
        source = f"the config's train.init_checkpoint: no checkpoint in {cfg.train.output_dir}"
    if not path:
        logger.warning(f"Evaluating random weights ({source} is empty)")
    else:
        (logger.warning if source.startswith("the config's") else logger.info)(f"Evaluating {path} ({source})")
    return path


def load_evaluated_checkpoint(args, cfg, model) -> str:
    """Load :func:`evaluated_checkpoint` into ``model``, and return its path. It must fill the
    whole model.

    Raises:
        ValueError: ``--resume`` without a checkpoint in the folder.
        CheckpointMismatchError: the checkpoint does not fit the config's model.
    """
    checkpointer = GCNetCheckpointer(model, cfg.train.output_dir)
    path = evaluated_checkpoint(args, cfg, checkpointer.get_checkpoint_file())
    checkpointer.load(path, fit="all", way_out="evaluate it with the config it was trained with")
    return path
