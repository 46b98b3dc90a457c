"""Loading LazyConfigs, with overrides that refuse unknown keys, and detectron2's own config
files."""
import difflib
import importlib.util
import os
from typing import List, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import LazyConfig

__all__ = [
    "load_config",
    "apply_overrides",
    "config_keys",
    "default_device",
    "detectron2_config_file",
    "get_detectron2_config",
]

_MISSING = object()


def default_device() -> str:
    """The default of ``train.device`` and of the predictor: "cuda" when this machine has a
    CUDA device, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def config_keys(cfg: DictConfig, prefix: str = "") -> List[str]:
    """Every dotted key of ``cfg``, through nested dicts (not into lists)."""
    keys = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        keys.append(path)
        value = cfg._get_node(key)
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


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """detectron2's ``LazyConfig.apply_overrides`` for ``key=value`` strings, except that a key
    must already exist: a misspelt key raises a ValueError naming it and the closest valid
    keys, instead of being added silently."""
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"Override {override!r} is not of the form key=value")
        key = override.split("=", 1)[0].strip()
        if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is _MISSING:
            close = _closest_keys(cfg, key)
            hint = f"; closest valid keys: {', '.join(close)}" if close else ""
            raise ValueError(f"Unknown config key {key!r} in override {override!r}{hint}")
    return LazyConfig.apply_overrides(cfg, list(overrides))


def load_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``LazyConfig.load(path)`` with :func:`apply_overrides`; a missing file raises a
    ValueError naming it."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such config file")
    return apply_overrides(LazyConfig.load(path), overrides)


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
