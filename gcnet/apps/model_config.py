"""The model a demo runs, named either way the tools take it: a model zoo name (with its trained
weights) or a LazyConfig file (a config of this project, or a run's ``config.yaml``)."""

import os
from typing import Optional, Sequence

import gcnet.model_zoo
from gcnet.engine import INFERENCE_KEYS, apply_overrides, load_config

__all__ = ["RUN_CONFIG_NAME", "model_config", "model_title"]

# The config that tools/train_net.py writes into a run's output folder.
RUN_CONFIG_NAME = "config.yaml"


def _check_one(model: Optional[str], config_file: Optional[str]) -> None:
    if bool(model) == bool(config_file):
        raise ValueError("give either a model zoo name (--model) or a config file (--config-file)")


def model_config(model: Optional[str] = None, config_file: Optional[str] = None, opts: Sequence[str] = ()):
    """The LazyConfig of zoo model ``model`` with its zoo weights, or of ``config_file``, with
    the ``key=value`` overrides ``opts``.

    Raises:
        ValueError: an unknown zoo name (with the closest ones), a missing or broken config
            file, an unknown key.
    """
    _check_one(model, config_file)
    if model:
        return apply_overrides(gcnet.model_zoo.get_config(model, trained=True), list(opts))
    return load_config(config_file, list(opts), required=INFERENCE_KEYS)


def model_title(model: Optional[str] = None, config_file: Optional[str] = None) -> str:
    """What a page calls the model: the zoo name; the config file's name without its extension;
    or, for a run's ``config.yaml``, the name of the run's folder."""
    _check_one(model, config_file)
    if model:
        return model
    path = os.path.abspath(os.path.expanduser(config_file))
    if os.path.basename(path) == RUN_CONFIG_NAME:
        return os.path.basename(os.path.dirname(path)) or RUN_CONFIG_NAME
    return os.path.splitext(os.path.basename(path))[0]
