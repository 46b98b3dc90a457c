"""The model zoo by name: configs, checkpoint URLs and models, as ``detectron2.model_zoo``."""

from typing import List, Optional

import torch

from detectron2.config import LazyConfig, instantiate

from gcnet.engine.checkpoint import GCNetCheckpointer
from gcnet.engine.config import apply_overrides

from .manifest import ZooModel, default_manifest, resource_path, unknown_name_error

__all__ = ["list_models", "get_checkpoint_url", "get_config", "get"]


def list_models(task: Optional[str] = None) -> List[str]:
    """Names of the zoo models, optionally of one task ("instance_segmentation",
    "semantic_segmentation")."""
    return sorted(name for name, m in default_manifest().models.items() if task in (None, m.task))


def get_checkpoint_url(name: str) -> str:
    """The upstream URL of a zoo model or ImageNet backbone."""
    sources = default_manifest().sources()
    if name not in sources:
        raise unknown_name_error(name, sources)
    return sources[name].url


def load_zoo_config(model: ZooModel, metric: Optional[str] = None):
    """The LazyConfig of a manifest entry: its config file with its ``config_overrides``, and
    those of ``metric`` when given."""
    overrides = model.config_overrides + (model.metric_overrides(metric) if metric is not None else ())
    return apply_overrides(LazyConfig.load(str(resource_path(model.config))), overrides)


def get_config(name: str, trained: bool = False, metric: Optional[str] = None):
    """The LazyConfig of zoo model ``name`` (its config file with the manifest's overrides).

    Args:
        trained: set ``train.init_checkpoint`` to the zoo checkpoint (``gcnet://<name>``)
            instead of the ImageNet weights training starts from.
        metric: the config that evaluates this metric of the entry, e.g. "mIoU (ms+flip)"
            (multi-scale and flipped test images); default: its single-scale config.
    """
    cfg = load_zoo_config(default_manifest().model(name), metric)
    if trained:
        cfg.train.init_checkpoint = f"gcnet://{name}"
    return cfg


def get(name: str, trained: bool = False, device: Optional[str] = None) -> torch.nn.Module:
    """The model of zoo entry ``name`` on ``device`` (default: CUDA if available), with the zoo
    checkpoint loaded when ``trained``; in training mode, as detectron2's ``model_zoo.get``."""
    cfg = get_config(name, trained=trained)
    model = instantiate(cfg.model)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if trained:
        GCNetCheckpointer(model).load(cfg.train.init_checkpoint, fit="all")
    return model
