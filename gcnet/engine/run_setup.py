"""The start of a run: detectron2's ``default_setup`` (loggers, seed, cuDNN, ``config.yaml``),
with a console a person can follow and an output folder that a refused run leaves as it was.

:func:`setup_console` comes first: the console gets a short header and leaves detectron2's
data-loading details to ``log.txt`` (``verbose`` brings everything back), and what is logged
is also kept in memory. Only once the run is accepted (its config, datasets, model and
checkpoint checked) does :func:`start_run` create the output folder, take its lock, write the
kept lines and what follows to ``log.txt``, and the environment, the full config and the model
to ``env.txt``, ``config.yaml`` and ``model.txt``. A run refused before it writes nothing there.
"""

import errno
import logging
import logging.handlers
import os
import sys
import textwrap
from typing import List, Sequence, Tuple

import torch

from detectron2.config import LazyConfig
from detectron2.data import MetadataCatalog
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from gcnet.utils.run_lock import FolderInUseError, lock_folder

__all__ = [
    "check_output_dir",
    "setup_console",
    "seed_run",
    "start_run",
    "describe_run",
    "describe_model",
    "describe_classes",
]

logger = logging.getLogger("detectron2")

# The loggers of a run, set up as detectron2's default_setup does.
RUN_LOGGERS = ("fvcore", "detectron2", "gcnet")
# Loggers whose INFO lines go to log.txt only (unless verbose): dataset serialization,
# mapper and sampler details, the instance histogram, the table of renamed ImageNet weights.
FILE_ONLY_LOGGERS = ("detectron2.data", "detectron2.checkpoint.c2_model_loading")


class _FileOnly(logging.Filter):
    """Keeps INFO records of :data:`FILE_ONLY_LOGGERS` off a console handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = record.name.startswith(FILE_ONLY_LOGGERS) and record.levelno <= logging.INFO
        return not quiet


class _KeptForLog(logging.handlers.BufferingHandler):
    """The records logged before the run is accepted, for its ``log.txt``."""

    def __init__(self):
        super().__init__(capacity=0)

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return False


_kept = _KeptForLog()


def check_output_dir(output_dir: str, lock: bool) -> None:
    """That a local ``output_dir`` can be created (or is a writable folder) and, with ``lock``,
    is not in use by a live run (:func:`gcnet.utils.run_lock.lock_folder`, taken here when the
    folder exists). Nothing is created. One of another ``PathManager`` handler
    (``<scheme>://...``) is left to it.

    Raises:
        ValueError: naming ``train.output_dir`` and what is wrong.
    """
    if "://" in output_dir:
        return
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        problem = "cannot be created: " + os.strerror(errno.ENOTDIR)
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = (
            "is not writable"
            if existing == os.path.abspath(output_dir)
            else "cannot be created: " + os.strerror(errno.EACCES)
        )
    else:
        problem = ""
    if problem:
        raise ValueError(f"train.output_dir {output_dir} {problem}")
    if lock and os.path.isdir(output_dir):
        _lock(output_dir)


def _lock(output_dir: str) -> None:
    try:
        lock_folder(output_dir)
    except FolderInUseError as e:
        raise ValueError(f"train.output_dir {e}") from None


def setup_console(verbose: bool = False) -> None:
    """The loggers of a run on the console (the main process only), as detectron2's
    ``default_setup`` sets them up, less the data-loading details unless ``verbose``; what
    they log is kept for the run's ``log.txt`` (:func:`start_run`)."""
    for name in RUN_LOGGERS:
        setup_logger(None, distributed_rank=comm.get_rank(), name=name)
        target = logging.getLogger(name)
        if _kept not in target.handlers:
            target.addHandler(_kept)
        if verbose:
            continue
        for handler in target.handlers:
            if getattr(handler, "stream", None) is sys.stdout:
                handler.addFilter(_FileOnly())


def _start_log_file(output_dir: str) -> None:
    """Add ``log.txt`` (``log.txt.rank<N>`` on other processes) to the run's loggers and write
    the records kept since :func:`setup_console` into it."""
    rank = comm.get_rank()
    files: List[Tuple[str, logging.Handler]] = []
    for name in RUN_LOGGERS:
        target = logging.getLogger(name)
        before = list(target.handlers)
        setup_logger(output_dir, distributed_rank=rank, name=name, configure_stdout=False)
        files += [(name, handler) for handler in target.handlers if handler not in before]
        if _kept in target.handlers:
            target.removeHandler(_kept)
    for record in _kept.buffer:
        for name, handler in files:
            if record.name == name or record.name.startswith(name + "."):
                handler.handle(record)
    _kept.buffer.clear()


def _write_text(output_dir: str, name: str, text: str) -> str:
    path = os.path.join(output_dir, name)
    with PathManager.open(path, "w") as f:
        f.write(text)
    return path


def start_run(cfg, args, model: torch.nn.Module = None, verbose: bool = False) -> None:
    """The run is accepted: create ``train.output_dir``, take its lock (training), start its
    ``log.txt``, write ``env.txt``, ``config.yaml`` (kept as it is by ``--eval-only`` in a
    folder that has one: the config of the run it evaluates) and ``model.txt``."""
    output_dir = cfg.train.output_dir
    if output_dir:
        PathManager.mkdirs(output_dir)
        if comm.is_main_process() and not args.eval_only and "://" not in output_dir:
            _lock(output_dir)
        _start_log_file(output_dir)
    environment = collect_env_info()
    config_yaml = os.path.join(output_dir, "config.yaml")
    if comm.is_main_process() and output_dir:
        _write_text(output_dir, "env.txt", environment)
        if not (args.eval_only and PathManager.isfile(config_yaml)):
            LazyConfig.save(cfg, config_yaml)
        if model is not None:
            _write_text(output_dir, "model.txt", f"{model}\n")
        logger.info(f"Output {output_dir}")
        logger.info("  log.txt, config.yaml (the full config), env.txt, model.txt, metrics.json, checkpoints")
    if verbose:
        logger.info("Environment info:\n" + environment)
        if PathManager.isfile(config_yaml):
            with PathManager.open(config_yaml) as f:
                logger.info("Full config:\n" + f.read())
        if model is not None:
            logger.info(f"Model:\n{model}")


def seed_run(cfg, args) -> None:
    """What detectron2's ``default_setup`` does before anything is built: seed the random
    generators (``train.seed``, plus the process's rank; a negative seed draws one) and set
    cuDNN's algorithm search (``train.cudnn_benchmark``, when training)."""
    seed = cfg.train.get("seed", -1)
    seed_all_rng(None if seed < 0 else seed + comm.get_rank())
    if not args.eval_only:
        torch.backends.cudnn.benchmark = cfg.train.get("cudnn_benchmark", False)


def describe_run(cfg, args) -> None:
    """The header's first lines: the config, its overrides, the device and what is run."""
    logger.info(f"Config {args.config_file}")
    for line in textwrap.wrap(" ".join(args.opts), width=80):
        logger.info(f"  with {line}")
    run = "evaluation" if args.eval_only else f"{cfg.train.max_iter} iterations"
    logger.info(f"Device {cfg.train.device}, {comm.get_world_size()} process(es), {run}")


def describe_classes(dataset_names: Sequence[str]) -> None:
    """One line with the number of classes of the first dataset and, up to ten, their names."""
    if not dataset_names:
        return
    metadata = MetadataCatalog.get(dataset_names[0])
    classes = metadata.get("thing_classes", None) or metadata.get("stuff_classes", None)
    if classes:
        names = ", ".join(classes[:10]) + (f", ... ({len(classes) - 10} more)" if len(classes) > 10 else "")
        logger.info(f"Classes {len(classes)} ({dataset_names[0]}): {names}")


def describe_model(model: torch.nn.Module) -> None:
    """One line with the model's class and size (its full print goes to model.txt)."""
    params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model {type(model).__name__}, {params / 1e6:.1f}M parameters (printed in model.txt)")
