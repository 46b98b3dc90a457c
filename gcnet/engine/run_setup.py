"""The start of a run: detectron2's ``default_setup`` (loggers, seed, cuDNN, ``config.yaml``),
with a console a person can follow. The environment, the full config and the model go to
files in the output dir; the console gets a short header and leaves detectron2's data-loading
details to ``log.txt``; ``verbose`` brings everything back to the console."""
import logging
import os
import sys
import textwrap

import torch

from detectron2.config import LazyConfig
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

__all__ = ["setup_run", "describe_model"]

logger = logging.getLogger("detectron2")

# Loggers whose INFO lines go to log.txt only (unless verbose): dataset serialization,
# mapper and sampler details, the instance histogram.
FILE_ONLY_LOGGERS = ("detectron2.data",)


class _FileOnly(logging.Filter):
    """Keeps INFO records of :data:`FILE_ONLY_LOGGERS` off a console handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = record.name.startswith(FILE_ONLY_LOGGERS) and record.levelno <= logging.INFO
        return not quiet


def _setup_loggers(output_dir: str, rank: int, verbose: bool) -> None:
    for name in ("fvcore", "detectron2", "gcnet"):
        setup_logger(output_dir, distributed_rank=rank, name=name)
        if verbose:
            continue
        for handler in logging.getLogger(name).handlers:
            if getattr(handler, "stream", None) is sys.stdout:
                handler.addFilter(_FileOnly())


def _write_text(output_dir: str, name: str, text: str) -> str:
    path = os.path.join(output_dir, name)
    with PathManager.open(path, "w") as f:
        f.write(text)
    return path


def setup_run(cfg, args, verbose: bool = False) -> None:
    """What detectron2's ``default_setup`` does, with a short header instead of the
    environment and the config on the console: they are written to ``env.txt`` and
    ``config.yaml`` in ``train.output_dir`` (and logged too with ``verbose``)."""
    output_dir, rank = cfg.train.output_dir, comm.get_rank()
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    _setup_loggers(output_dir, rank, verbose)
    environment = collect_env_info()
    logger.info(f"Config {args.config_file}")
    for line in textwrap.wrap(" ".join(args.opts), width=80):
        logger.info(f"  with {line}")
    config_yaml = os.path.join(output_dir, "config.yaml")
    if comm.is_main_process() and output_dir:
        _write_text(output_dir, "env.txt", environment)
        LazyConfig.save(cfg, config_yaml)
        logger.info(f"Output {output_dir}")
        logger.info("  log.txt, config.yaml (the full config), env.txt, model.txt, metrics.json, checkpoints")
    run = "evaluation" if args.eval_only else f"{cfg.train.max_iter} iterations"
    logger.info(f"Device {cfg.train.device}, {comm.get_world_size()} process(es), {run}")
    if verbose:
        logger.info("Environment info:\n" + environment)
        if PathManager.isfile(config_yaml):
            with PathManager.open(config_yaml) as f:
                logger.info("Full config:\n" + f.read())
    seed = cfg.train.get("seed", -1)
    seed_all_rng(None if seed < 0 else seed + rank)
    if not args.eval_only:
        torch.backends.cudnn.benchmark = cfg.train.get("cudnn_benchmark", False)


def describe_model(model: torch.nn.Module, output_dir: str, verbose: bool = False) -> None:
    """One line with the model's class and size; its full print in ``output_dir``/model.txt
    (and logged with ``verbose``)."""
    params = sum(p.numel() for p in model.parameters())
    if comm.is_main_process() and output_dir:
        _write_text(output_dir, "model.txt", f"{model}\n")
    logger.info(f"Model {type(model).__name__}, {params / 1e6:.1f}M parameters (printed in model.txt)")
    if verbose:
        logger.info(f"Model:\n{model}")
