"""Checkpoints that are complete or absent whenever the process is killed, loaded only from
sources that cannot run code, and loaded into a model only when they fit it."""

import os
import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils.file_io import PathManager

from gcnet.utils.file_io import PARTIAL_SUFFIX, AtomicWritePathManager, atomic_path
from gcnet.utils.local_files import TRUSTED_PICKLE_HOSTS, local_checkpoint
from gcnet.utils.safe_load import UnsafeCheckpointError, load_checkpoint_file, load_pickle_file

__all__ = [
    "GCNetCheckpointer",
    "CheckpointFit",
    "CheckpointMismatchError",
    "FIT_RULES",
    "checkpoint_fit",
    "read_last_checkpoint",
    "TRUSTED_PICKLE_HOSTS",
]

# How much of the model a checkpoint must fill (GCNetCheckpointer.load's ``fit``): "all" of it
# (resume, evaluation), what an initialisation fills ("init": new layers are fine, other shapes
# are not), or "any" part of it.
FIT_RULES = ("all", "init", "any")
# Keys that are not weights: BatchNorm's step counters, detectron2's input normalisation
# (taken from the config when absent) and its anchors (computed).
NOT_WEIGHTS = re.compile(r"(^|\.)(num_batches_tracked|pixel_mean|pixel_std|cell_anchors\.\d+)$")


def read_last_checkpoint(save_dir: str, path_manager=PathManager) -> str:
    """The file name that ``<save_dir>/last_checkpoint`` holds, or "" when there is no tag or
    it holds no text (empty, or bytes that are not UTF-8: a tag cut or overwritten)."""
    try:
        with path_manager.open(os.path.join(save_dir, "last_checkpoint"), "rb") as f:
            name = f.read().decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return name


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model (another architecture, another size); the
    message names the first differing keys and shapes, and the way out."""


class CheckpointFit(NamedTuple):
    """How a checkpoint's weights fit a model, as ``torch.nn.Module.load_state_dict`` reports
    it, with fvcore's ``incorrect_shapes``: (key, shape in the checkpoint, shape in the model)."""

    missing_keys: List[str]
    unexpected_keys: List[str]
    incorrect_shapes: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]


def _made_up(model: torch.nn.Module, key: str, weights: Mapping[str, Any]) -> bool:
    """Whether a missing ``key`` needs no value: not a weight (:data:`NOT_WEIGHTS`), or the
    statistics a FrozenBatchNorm2d makes up when its checkpoint (ImageNet weights) has none."""
    if NOT_WEIGHTS.search(key):
        return True
    module_name, _, name = key.rpartition(".")
    if name not in ("running_mean", "running_var") or f"{module_name}.weight" not in weights:
        return False
    return isinstance(model.get_submodule(module_name), FrozenBatchNorm2d)


def checkpoint_fit(model: torch.nn.Module, weights: Mapping[str, Any]) -> CheckpointFit:
    """How ``weights`` (a state dict) fit ``model``, computed without loading them."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not _made_up(model, k, weights)]
    unexpected = [k for k in weights if k not in own and not NOT_WEIGHTS.search(k)]
    shapes = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in weights.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    return CheckpointFit(missing, unexpected, shapes)


def _class_dependent(model: torch.nn.Module, key: str, checkpoint_shape, model_shape) -> bool:
    """Whether a tensor's shape differs only in the number of classes: the first dimension,
    which is K, K + 1 (a background class) or 4 (K + 1) (class-specific boxes) for a
    ``num_classes`` K of the model."""
    counts = {m.num_classes for m in model.modules() if isinstance(getattr(m, "num_classes", None), int)}
    sizes = {size for k in counts for size in (k, k + 1, 4 * k, 4 * (k + 1))}
    same_rest = checkpoint_shape[1:] == model_shape[1:] and len(checkpoint_shape) == len(model_shape)
    return same_rest and len(model_shape) > 0 and model_shape[0] in sizes


def _shape(shape: Tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _first(items: List[str], count: int = 3) -> str:
    return "; ".join(items[:count]) + ("; ..." if len(items) > count else "")


def _size(tensors) -> str:
    tensors = list(tensors)
    return f"{sum(int(np.prod(t.shape)) for t in tensors) / 1e6:.1f}M values in {len(tensors)} tensors"


def _mismatch(model, weights, fit: CheckpointFit, rule: str) -> Optional[str]:
    """Why ``weights`` may not be loaded into ``model`` under ``rule`` (None if they may)."""
    shapes = [s for s in fit.incorrect_shapes if rule == "all" or not _class_dependent(model, *s)]
    details = [f"{k} is {_shape(c)} in it, {_shape(m)} in the model" for k, c, m in shapes]
    own = {k: v for k, v in model.state_dict().items() if not NOT_WEIGHTS.search(k)}
    if rule == "all" and (fit.missing_keys or shapes):
        details += [f"{k} is missing" for k in fit.missing_keys]
        what = (
            f"{len(fit.missing_keys) + len(shapes)} of its {len(own)} parameters and buffers are missing or of "
            "another shape in it"
        )
    elif rule == "init" and shapes:
        what = f"{len(shapes)} of its {len(own)} parameters and buffers are of another shape in it"
    elif rule == "init" and not _filled(model, fit):
        details = [f"{k} is missing" for k in fit.missing_keys]
        what = f"it fills none of the model's {len(own)} parameters and buffers"
    else:
        return None
    checkpoint_size = _size([v for k, v in weights.items() if not NOT_WEIGHTS.search(k)])
    return (
        f"{what} ({_first(details)}); the config builds a {type(model).__name__} of {_size(own.values())}, the "
        f"checkpoint holds {checkpoint_size}"
    )


def _filled(model: torch.nn.Module, fit: CheckpointFit) -> List[str]:
    """The parameters of ``model`` that a checkpoint of ``fit`` fills."""
    unfilled = set(fit.missing_keys) | {k for k, *_ in fit.incorrect_shapes}
    return [name for name, _ in model.named_parameters() if name not in unfilled]


def _groups(keys: List[str], count: int = 4) -> str:
    """``keys`` grouped by the first two names of their module: ``roi_heads.box_head.* (4), ...``."""
    groups: Dict[str, int] = {}
    for key in keys:
        group = ".".join(key.split(".")[:-1][:2]) or key
        groups[group] = groups.get(group, 0) + 1
    shown = [f"{g}.* ({n})" for g, n in list(groups.items())[:count]]
    return ", ".join(shown) + (f" and {len(groups) - count} more" if len(groups) > count else "")


class GCNetCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer``, with

    * atomic saves on a local ``save_dir``: saves write through an
      :class:`~gcnet.utils.AtomicWritePathManager`, so that a checkpoint and the
      ``last_checkpoint`` tag are each written to a temporary file and renamed, the tag after
      the checkpoint, and a run killed at any moment (even while saving) resumes from the last
      complete checkpoint; ``resume_or_load`` removes what a killed save left, and says so when
      ``resume`` finds no checkpoint. Other ``PathManager`` paths are written as they are;
    * safe loads: ``.pth`` files through ``torch.load(weights_only=True)`` with the numpy and
      mmengine types of :data:`gcnet.utils.safe_load.SAFE_GLOBALS`; pickled ``.pkl`` files
      only from local paths the user names or detectron2's model zoo over https (decided on the
      resolved local file and its source, never on the string typed; never one that
      ``last_checkpoint`` names), and then with an unpickler that builds numpy arrays and
      containers only; a truncated or corrupt file reported by name;
    * loads that fit: ``load(..., fit=...)`` refuses, before it changes the model, a checkpoint
      that does not fill what the rule asks (:data:`FIT_RULES`), in one sentence that names the
      first differing keys and shapes; what a load filled is logged in one line (``self.fit``
      keeps it);
    * a resume whose newest checkpoint is unreadable (or a ``last_checkpoint`` that names none)
      falls back to the newest intact one;
    * a remote checkpoint that cannot be downloaded (no network) or a local one that does not
      exist reported in one sentence, with the way out.
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = AtomicWritePathManager(self.path_manager)
        self.fit: Optional[CheckpointFit] = None  # of the last load
        self.last_saved = (None, "")  # (iteration, file) of the last save or resume, for save_or_link

    def resume_or_load(self, path: str, *, resume: bool = True, fit: str = "any", way_out: str = ""):
        """As fvcore's, except that an unreadable newest checkpoint (a ``last_checkpoint`` that
        names a missing, empty, truncated or corrupt file, or no file) falls back to the newest
        intact checkpoint of ``save_dir``, with a warning that names both. ``fit`` and
        ``way_out`` are :meth:`load`'s; a resume requires the checkpoint to fit all of the model."""
        self._remove_partial_files()
        if resume and self.has_checkpoint():
            return self._resume(way_out)
        if resume:
            self.logger.info(
                f"Resume: no checkpoint in {self.save_dir}; starting from {path or 'randomly initialised weights'}"
            )
        return self.load(path, checkpointables=[], fit=fit, way_out=way_out)

    def _remove_partial_files(self) -> None:
        if self.save_dir and self.save_to_disk and self.path_manager.isdir(self.save_dir):
            for name in self.path_manager.ls(self.save_dir):
                if name.endswith(PARTIAL_SUFFIX):
                    partial = os.path.join(self.save_dir, name)
                    self.logger.info(f"Removing {partial}, left by an interrupted save")
                    self.path_manager.rm(partial)

    def get_checkpoint_file(self) -> str:
        """The checkpoint that ``last_checkpoint`` names (:func:`read_last_checkpoint`), or ""."""
        name = read_last_checkpoint(self.save_dir, self.path_manager)
        return os.path.join(self.save_dir, name) if name else ""

    def _resume(self, way_out: str):
        newest = self.get_checkpoint_file()
        candidates = [c for c in self.checkpoints_newest_first() if c != newest]
        failures = []
        if not newest:
            newest = os.path.join(self.save_dir, "last_checkpoint")
            failures.append(f"{newest} names no file")
        else:
            candidates.insert(0, newest)
        for candidate in candidates:
            try:
                extra = self._load_own(candidate, way_out)
            except (UnsafeCheckpointError, CheckpointMismatchError):
                raise
            except (OSError, ValueError) as e:
                failures.append(f"{candidate}: {e}")
                continue
            if failures:
                self.logger.warning(
                    f"Resume: the newest checkpoint {newest} cannot be loaded ({failures[0]}); resuming from "
                    f"{candidate}, the newest intact checkpoint"
                )
            self.last_saved = (extra.get("iteration"), candidate)
            return extra
        raise ValueError(
            f"Cannot resume from {self.save_dir}: no intact checkpoint ({'; '.join(failures)}). "
            "Start afresh in another output dir, or without --resume"
        )

    def checkpoints_newest_first(self) -> List[str]:
        """The ``.pth`` files of ``save_dir``, most recently written first."""
        names = [n for n in self.path_manager.ls(self.save_dir) if n.endswith(".pth")]
        paths = [os.path.join(self.save_dir, n) for n in names]
        return sorted(paths, key=os.path.getmtime, reverse=True) if "://" not in self.save_dir else paths

    def _load_own(self, path: str, way_out: str):
        """Load a checkpoint this checkpointer wrote (named by ``last_checkpoint`` or found in
        ``save_dir``): never a pickle, which gcnet does not write."""
        if path.endswith(".pkl"):
            raise UnsafeCheckpointError(
                f"Refusing to unpickle {path}, named by {os.path.join(self.save_dir, 'last_checkpoint')}: "
                "gcnet writes its checkpoints as .pth files; remove the tag if you did not write it"
            )
        if not self.path_manager.isfile(path):
            raise FileNotFoundError(f"{path} does not exist")
        return self.load(path, fit="all", way_out=way_out)

    def load(self, path: str, checkpointables: Optional[List[str]] = None, *, fit: str = "any", way_out: str = ""):
        """Load ``path`` (a local file, a URL, ``detectron2://`` or ``gcnet://`` name; a
        ``?matching_heuristics=True`` query renames keys as detectron2 does) into the model and
        ``checkpointables`` (default: all), and return what else the checkpoint holds.

        Args:
            fit: what the checkpoint must fill (:data:`FIT_RULES`): "all" of the model; for
                "init", the parameters it lacks start new, and so do the layers whose first
                dimension is the number of classes (named in the log), but a tensor of another
                shape elsewhere means another model; "any": what fits is loaded.
            way_out: what the user can do instead, said after a refusal.

        Raises:
            CheckpointMismatchError: before the model is changed, when the checkpoint does not
                fit it under ``fit``.
        """
        if fit not in FIT_RULES:
            raise ValueError(f"fit must be one of {FIT_RULES}, got {fit!r}")
        if not path:
            self.logger.info("No checkpoint to load: the model keeps its initialisation")
            return {}
        self.logger.info(f"Loading {path}")
        parsed = urlparse(path)
        remote = "://" in path
        local = local_checkpoint(parsed._replace(query="").geturl() if remote else path, self.path_manager)
        checkpoint = self.read_checkpoint(local.path, local.pickle_refusal)
        if remote and parse_qs(parsed.query).get("matching_heuristics") == ["True"]:
            checkpoint["matching_heuristics"] = True
        weights = self._model_weights(checkpoint)
        self.fit = checkpoint_fit(self.model, weights)
        problem = _mismatch(self.model, weights, self.fit, fit)
        if problem:
            raise CheckpointMismatchError(
                f"{path} does not fit the model of the config: {problem}; {way_out}".rstrip("; ")
            )
        self._load_weights(path, weights)
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def read_checkpoint(self, filename: str, pickle_refusal: Optional[str] = "only files named through load()") -> dict:
        """The checkpoint dict of a local file, with the model's weights under "model": a
        ``.pth`` file (torch's formats, weights only), or a ``.pkl`` file of detectron2's or
        Detectron's model zoo when ``pickle_refusal`` is None.

        Raises:
            UnsafeCheckpointError: the file would run code, or is a pickle that may not be read.
            ValueError: the file is truncated or corrupt (named in the message).
        """
        try:
            if filename.endswith(".pkl"):
                if pickle_refusal:
                    raise UnsafeCheckpointError(f"Refusing to unpickle {filename}: {pickle_refusal}")
                return self._pickled_checkpoint(load_pickle_file(filename))
            loaded = load_checkpoint_file(filename)
        except Exception as e:  # a corrupt file can make torch's unpickler raise almost anything
            if isinstance(e, (FileNotFoundError, UnsafeCheckpointError)):
                raise
            raise ValueError(f"Cannot load checkpoint {filename}: it is truncated or corrupt ({e})") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"Cannot load checkpoint {filename}: a {type(loaded).__name__}, not a dict of weights")
        return loaded if "model" in loaded else {"model": loaded}

    @staticmethod
    def _pickled_checkpoint(data: Any) -> dict:
        """detectron2's reading of a ``.pkl`` checkpoint: a dict of its model zoo as it is; the
        weights of a Caffe2 model (under "blobs" for detection models) with detectron2's
        renaming heuristics."""
        if not isinstance(data, dict):
            raise ValueError(f"a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # detectron2's model zoo
            return data
        data = data.get("blobs", data)
        weights = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}

    def _model_weights(self, checkpoint: dict) -> Dict[str, torch.Tensor]:
        """The checkpoint's model weights as tensors named as the model names them: numpy
        arrays converted, a ``module.`` prefix (DistributedDataParallel) removed, and, for
        checkpoints that ask for it, detectron2's renaming heuristics applied."""
        weights = {}
        for key, value in checkpoint.pop("model").items():
            if not isinstance(value, (np.ndarray, torch.Tensor)):
                raise ValueError(f"The checkpoint's model weights hold {key}, a {type(value).__name__}, not a tensor")
            weights[key] = torch.as_tensor(value)
        consume_prefix_in_state_dict_if_present(weights, "module.")
        if checkpoint.get("matching_heuristics", False):
            caffe2 = checkpoint.get("__author__") == "Caffe2"
            weights = align_and_update_state_dicts(self.model.state_dict(), weights, c2_conversion=caffe2)
        return weights

    def _load_weights(self, path: str, weights: Dict[str, torch.Tensor]) -> None:
        """Load the weights that have the model's shapes, and say in one line what they filled."""
        wrong = {k for k, *_ in self.fit.incorrect_shapes}
        self.model.load_state_dict({k: v for k, v in weights.items() if k not in wrong}, strict=False)
        own = [k for k in self.model.state_dict() if not NOT_WEIGHTS.search(k)]
        unfilled = set(self.fit.missing_keys) | wrong
        line = f"Loaded {path}: {len(own) - len(unfilled & set(own))} of the model's {len(own)} tensors"
        if self.fit.missing_keys:
            line += f"; new: {_groups(self.fit.missing_keys)}"
        if self.fit.incorrect_shapes:
            line += f"; of another shape, new: {_groups(sorted(wrong))}"
        if self.fit.unexpected_keys:
            line += f"; unused: {_groups(self.fit.unexpected_keys)}"
        self.logger.info(line)

    def save(self, name: str, *, tag_last: bool = True, **kwargs) -> None:
        """fvcore's ``save``: ``<save_dir>/<name>.pth`` holds the model, the checkpointables and
        ``kwargs``; ``tag_last=False`` leaves ``last_checkpoint`` as it is (a copy of weights
        saved before, such as ``model_best``, is not where a resume continues from)."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {path}")
        with self.path_manager.open(path, "wb") as f:
            torch.save(data, f)
        if tag_last:
            self.tag_last_checkpoint(f"{name}.pth")
        self.last_saved = (kwargs.get("iteration"), path)

    def save_or_link(self, name: str, weights_iteration: int, **kwargs) -> None:
        """:meth:`save` without tagging it as the last checkpoint, or, when the last file this
        checkpointer saved or resumed from holds the weights of ``weights_iteration``
        (``model_best`` when the best evaluation is the final one), a hard link to that file
        instead of a second copy."""
        iteration, saved = self.last_saved
        target = os.path.join(self.save_dir, f"{name}.pth")
        if iteration is not None and iteration == weights_iteration and os.path.isfile(saved):
            try:
                with atomic_path(target) as tmp:
                    os.link(saved, tmp)
                self.logger.info(f"Linked {target} to {saved} (the same iteration {iteration})")
                return
            except OSError as e:  # a file system without hard links
                self.logger.info(f"Cannot link {target} to {saved} ({e.strerror}); saving a copy")
        last_saved = self.last_saved
        self.save(name, tag_last=False, **kwargs)
        self.last_saved = last_saved
