"""Loading LazyConfigs, with overrides that refuse unknown keys, and detectron2's own config
files."""

import difflib
import importlib.util
import os
from typing import List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import LazyConfig

from gcnet.modeling.backbone.resnet import RENAMED_OPTIONS

__all__ = [
    "load_config",
    "inference_device",
    "INFERENCE_KEYS",
    "TRAINING_KEYS",
    "apply_overrides",
    "config_keys",
    "default_device",
    "detectron2_config_file",
    "get_detectron2_config",
]

_MISSING = object()
# The top-level keys a LazyConfig defines to run a model on images (the test loader's mapper and
# dataset metadata), and to train it with tools/train_net.py.
INFERENCE_KEYS = ("model", "train", "dataloader")
TRAINING_KEYS = (*INFERENCE_KEYS, "optimizer", "lr_multiplier")


def default_device() -> str:
    """The default of ``train.device`` and of the predictor: "cuda" when this machine has a
    CUDA device, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_device(cfg: DictConfig, device: Optional[str] = None) -> torch.device:
    """Where a model of ``cfg`` runs: ``device`` where given, else ``train.device``, else
    :func:`default_device`."""
    return torch.device(device or cfg.train.get("device") or default_device())


def config_keys(cfg: DictConfig, prefix: str = "") -> List[str]:
    """Every dotted key of ``cfg``, through nested dicts (not into lists)."""
    keys = []
    for key, value in cfg.items_ex(resolve=False):
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, DictConfig):
            keys.extend(config_keys(value, path + "."))
    return keys


def _closest_keys(cfg: DictConfig, key: str) -> List[str]:
    """Keys like ``key``: under its parent when the parent exists (so that the shared prefix
    does not make every key look alike), else in the whole config."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else None
    if isinstance(node, DictConfig):
        names = difflib.get_close_matches(name, config_keys(node), n=3, cutoff=0.6)
        return [f"{parent}.{n}" for n in names]
    return difflib.get_close_matches(key, config_keys(cfg), n=3, cutoff=0.6)


def _renamed_option(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` is the name an option of the GC-ResNet had in earlier releases
    (:data:`gcnet.modeling.backbone.resnet.RENAMED_OPTIONS`) under a node that has it under its
    new name."""
    parent, _, name = key.rpartition(".")
    new = RENAMED_OPTIONS.get(name)
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return new is not None and isinstance(node, DictConfig) and new in node


def _typed_value(key: str, override: str, old, new):
    """``new`` as the type of ``old``, the value it overrides: a bool stays a bool, an int an
    int (an integral float such as 1e3 is taken), a float takes ints and floats; anything
    else raises a ValueError that names the key and what it takes. Values of other types
    (strings, lists, None) are taken as they are."""
    expected = {bool: "true or false", int: "an integer", float: "a number"}.get(type(old))
    if expected is None:
        return new
    if type(old) is int and type(new) is float and new.is_integer():
        return int(new)
    if type(new) is type(old) or (type(old) is float and type(new) is int):
        return new
    raise ValueError(f"Override {override!r}: {key} takes {expected} (the config has {old!r}), got {new!r}")


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """detectron2's ``LazyConfig.apply_overrides`` for ``key=value`` strings, except that

    * a key must already exist: a misspelt key raises a ValueError naming it and the closest
      valid keys, instead of being added silently (the GC-ResNet's options of earlier releases
      are taken under their old names, which say their new ones when the model is built);
    * a value must have the type of the one it replaces (:func:`_typed_value`), so that
      ``train.max_iter=abc`` stops here and not after the model is built;
    * a value that does not parse (an unquoted ``#``, an unbalanced bracket) raises a
      ValueError naming it, with the way to quote it.
    """
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"Override {override!r} is not of the form key=value")
        key = override.split("=", 1)[0].strip()
        old = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        if old is _MISSING and _renamed_option(cfg, key):  # the function takes it, and says its new name
            old = None
        if old is _MISSING:
            close = _closest_keys(cfg, key)
            hint = f"; closest valid keys: {', '.join(close)}" if close else ""
            raise ValueError(f"Unknown config key {key!r} in override {override!r}{hint}")
        try:
            LazyConfig.apply_overrides(cfg, [override])
        except Exception as e:  # hydra's OverrideParseException and its grammar errors
            raise ValueError(
                f"Override {override!r} cannot be parsed ({str(e).splitlines()[0]}); quote a value with "
                f"special characters: {key}='...'"
            ) from None
        given = OmegaConf.select(cfg, key)
        typed = _typed_value(key, override, old, given)
        if typed is not given:
            OmegaConf.update(cfg, key, typed, merge=False)
    return cfg


def load_config(path: str, overrides: Sequence[str] = (), required: Sequence[str] = ("model", "train")) -> DictConfig:
    """``LazyConfig.load(path)`` with :func:`apply_overrides`; a missing file, one that cannot
    be run (a syntax error, a failing import), or one that does not define the ``required``
    top-level keys (an empty file) raises a ValueError naming it."""
    if not path:
        raise ValueError("No config file given: --config-file <a LazyConfig .py or .yaml>")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such config file")
    try:
        cfg = LazyConfig.load(path)
    except SyntaxError as e:
        error = e.__cause__ if isinstance(e.__cause__, SyntaxError) else e  # detectron2 wraps the parser's
        raise ValueError(f"{path}, line {error.lineno}: {error.msg}") from None
    except Exception as e:
        raise ValueError(f"{path}: the config cannot be loaded ({type(e).__name__}: {e})") from None
    content = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else None
    keys = list(content) if isinstance(content, dict) else []
    if any(key not in keys for key in required):
        defined = f"defines only {', '.join(keys)}" if keys else "defines nothing"
        raise ValueError(f"{path} {defined}: expected a LazyConfig that defines {', '.join(required)} (as configs/ do)")
    return apply_overrides(cfg, overrides)


def detectron2_config_file(relative_path: str) -> str:
    """The path of one of the config files detectron2 ships in its package
    (``common/train.py``, ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml``, ...), as
    ``detectron2.model_zoo.get_config_file`` finds it, without importing
    ``detectron2.model_zoo`` (which needs ``pkg_resources``, gone from setuptools 82 on):
    ``find_spec`` locates the package's folder without running it."""
    spec = importlib.util.find_spec("detectron2.model_zoo")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "configs", relative_path)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"detectron2's config {relative_path} is not in {folders or 'an installed detectron2'}: "
        "reinstall detectron2 (README.md, Install)"
    )


def get_detectron2_config(relative_path: str) -> DictConfig:
    """One of detectron2's LazyConfig files (:func:`detectron2_config_file`), loaded, as
    ``detectron2.model_zoo.get_config`` returns it."""
    return LazyConfig.load(detectron2_config_file(relative_path))
