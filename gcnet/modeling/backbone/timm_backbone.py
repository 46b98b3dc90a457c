"""ImageNet-pretrained GC networks of timm as detectron2 backbones.

The paper's releases have no ImageNet-pretrained GC-ResNet: its COCO models start from a plain
ResNet whose GC blocks begin as the identity (Section 5.1). timm publishes ImageNet-trained GC
networks, ``gcresnet50t`` (80.9% top-1 at 256 px), ``gcresnext50ts`` (80.6%), ``gcresnet33ts``
(80.1%) and ``gcresnext26ts`` (77.8%). They are not the paper's architecture (a tiered 3-conv
stem, GC blocks with ratio 1/8 and LayerNorm2d after the 3x3 conv of every block, c2 included,
SiLU in the ``ts`` variants), so :class:`TimmBackbone` wraps the timm model itself
(``features_only``) instead of converting its weights to :func:`build_gcnet_resnet`.

Weights come from timm's hub by model name (with timm's own caching), or from a local file of
the plain timm model's state dict (``pretrained_file``: ``.pth``, ``.bin`` or
``.safetensors``, read by timm without unpickling objects). Weights already in the Hugging
Face cache are read from there without asking the hub; when they are not and the hub cannot
be reached, that is said within the download timeouts of :mod:`gcnet.utils.download`, not
after the hub client's minute of retries.
"""

import difflib
import os
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone

from gcnet.utils.download import unreachable

from .fpn import build_fpn

__all__ = [
    "TIMM_NORMS",
    "TimmBackbone",
    "add_timm_backbone_config",
    "build_timm_backbone",
    "build_timm_fpn_backbone",
]

# "FrozenBN": timm's BatchNorm(+act) layers with fixed statistics and affine parameters, as
# the paper's fixed-BN models; "BN": timm's own layers; "SyncBN": timm's synchronized
# BatchNorm(+act) (torch.nn.SyncBatchNorm, on GPUs).
TIMM_NORMS = ("FrozenBN", "BN", "SyncBN")
# detectron2's names of the strides-4 to 32 stages (res2 .. res5), as build_gcnet_resnet.
_STAGE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _import_timm():
    try:
        import timm
    except ImportError as e:
        raise ImportError("TimmBackbone needs timm: pip install 'gcnet[timm]'") from e
    return timm


def timm_layers():
    """``timm.layers`` (timm is an optional dependency)."""
    return _import_timm().layers


def _check_model_name(model_name: str) -> None:
    timm = _import_timm()
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.8)
        raise ValueError(
            f"TimmBackbone: timm has no model {model_name!r}" + (f"; close: {', '.join(close)}" if close else "")
        )


def _stage_indices(model_name: str, stage_names: Sequence[str]) -> List[int]:
    """timm's feature indices of the given stages (found by stride, on the meta device)."""
    _check_model_name(model_name)
    with torch.device("meta"):
        reductions = _import_timm().create_model(model_name, features_only=True).feature_info.reduction()
    strides = [_STAGE_STRIDES[s] for s in stage_names]
    if any(stride not in reductions for stride in strides):
        raise ValueError(f"TimmBackbone: timm's {model_name} has features at strides {reductions}, not at {strides}")
    return [reductions.index(stride) for stride in strides]


def _pretrained_overlay(model_name: str, pretrained: bool, pretrained_file: str) -> Optional[dict]:
    """timm's ``pretrained_cfg_overlay`` for a local file, checked before any model is built."""
    if not pretrained_file:
        return None
    if not pretrained:
        raise ValueError(
            f"TimmBackbone({model_name!r}): pretrained_file={pretrained_file!r} is given but "
            "pretrained=False; set pretrained=True to load it, or leave pretrained_file empty"
        )
    if not os.path.isfile(pretrained_file):
        raise FileNotFoundError(
            f"pretrained_file {pretrained_file}: no such file (expected a state dict of timm's {model_name})"
        )
    return dict(file=os.path.abspath(pretrained_file))


def _no_weights_error(model_name: str, reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Cannot get the ImageNet weights of timm's {model_name}: not in timm's cache, and the download "
        f"failed ({reason}); set pretrained_file to a local state dict of the model "
        f"(e.g. {model_name}.safetensors), or pretrained=False to train from random init"
    )


def _hub_overlay(model_name: str) -> Optional[dict]:
    """For weights that timm gets from the Hugging Face hub: the ``pretrained_cfg_overlay``
    of their copy in the Hugging Face cache, or None (timm downloads them) when there is none
    and the hub answers.

    Raises:
        FileNotFoundError: not in the cache, and the hub is unreachable or offline mode is on.
    """
    import huggingface_hub

    cfg = _import_timm().models.get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id or cfg.source not in (None, "", "hf-hub"):
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(cached, str):
            return dict(file=cached)
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise _no_weights_error(model_name, "Hugging Face's offline mode is on (HF_HUB_OFFLINE)")
    url = f"{huggingface_hub.constants.ENDPOINT}/{repo}/resolve/{revision or 'main'}/{filenames[0]}"
    reason = unreachable(url)
    if reason:
        raise _no_weights_error(model_name, f"cannot reach {url}: {reason}")
    return None


def _fit_report(model_name: str, path: str) -> str:
    """Which keys of the file at ``path`` do not fit timm's ``model_name``, in one line."""
    timm = _import_timm()
    from timm.models import load_state_dict

    with torch.device("meta"):
        expected = {k: v.shape for k, v in timm.create_model(model_name).state_dict().items()}
    found = {k: v.shape for k, v in load_state_dict(path).items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = [
        f"{len(v)} {what} (first: {v[0]})"
        for what, v in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if v
    ]
    return ", ".join(parts) or "its keys fit, but timm refused it"


def _first_line(e: BaseException, limit: int = 120) -> str:
    """The exception's type, with the first line of its message if that is short."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text and len(text) <= limit else type(e).__name__


def create_timm_features(
    model_name: str, out_indices: Sequence[int], pretrained: bool, pretrained_file: str, **kwargs
) -> nn.Module:
    """``timm.create_model(model_name, features_only=True, out_indices=...)`` with weights from
    timm's hub, from ``pretrained_file``, or random (``pretrained=False``). Failing to get the
    weights raises a one-line error that names the model or file and the way out."""
    timm = _import_timm()
    _check_model_name(model_name)
    overlay = _pretrained_overlay(model_name, pretrained, pretrained_file)
    hub_copy = _hub_overlay(model_name) if pretrained and not overlay else None
    if overlay or hub_copy:
        kwargs["pretrained_cfg_overlay"] = overlay or hub_copy
    try:
        return timm.create_model(
            model_name, features_only=True, out_indices=tuple(out_indices), pretrained=pretrained, **kwargs
        )
    except Exception as e:
        if overlay and isinstance(e, RuntimeError) and "state_dict" in str(e):
            report = _fit_report(model_name, pretrained_file)
            raise ValueError(f"pretrained_file {pretrained_file} does not hold timm's {model_name}: {report}") from e
        if overlay:
            raise ValueError(
                f"pretrained_file {pretrained_file} is not a readable state dict of timm's {model_name} (expected "
                f"tensors saved by torch.save or safetensors; {_first_line(e, limit=240)})"
            ) from e
        if isinstance(e, OSError):
            raise _no_weights_error(model_name, _first_line(e)) from e
        raise


class TimmBackbone(Backbone):
    """A timm model's strides-4 to 32 stages as a detectron2 backbone (``res2`` .. ``res5``, as
    :func:`build_gcnet_resnet`, so detectron2's FPN takes it unchanged).

    LazyConfig-callable (``L(TimmBackbone)(model_name="gcresnet50t")``) and, with
    :func:`add_timm_backbone_config`, built from yacs configs by ``build_timm_backbone`` /
    ``build_timm_fpn_backbone`` (``BACKBONE_REGISTRY``).
    """

    @configurable
    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = True,
        pretrained_file: str = "",
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        norm: str = "FrozenBN",
        freeze_at: int = 0,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
    ):
        """
        Args:
            model_name: a timm model with features at strides 4-32 (``timm.list_models("gc*")``).
            pretrained: load ImageNet weights: from ``pretrained_file`` if given, else from
                timm's hub (cached by timm). False: random init.
            pretrained_file: a local state dict of the plain timm model (as
                ``torch.save(timm.create_model(model_name).state_dict(), path)`` or timm's
                ``.safetensors``), loaded strictly.
            out_features: any of "res2" .. "res5" (strides 4, 8, 16, 32).
            norm: one of :data:`TIMM_NORMS`.
            freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 the stem and res2 .. res<k>
                (as detectron2's ResNet; their BatchNorms are frozen too).
            in_channels, drop_path_rate: passed to ``timm.create_model``.
        """
        super().__init__()
        if not out_features or any(f not in _STAGE_STRIDES for f in out_features):
            raise ValueError(
                f"TimmBackbone: out_features must be some of {list(_STAGE_STRIDES)}, got {list(out_features)}"
            )
        if norm not in TIMM_NORMS:
            raise ValueError(f"TimmBackbone: norm must be one of {list(TIMM_NORMS)}, got {norm!r}")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"TimmBackbone: freeze_at must be 0 .. 5, got {freeze_at}")
        self.model_name = model_name
        last = max(_STAGE_STRIDES[f] for f in out_features)
        self._stage_names = [s for s, stride in _STAGE_STRIDES.items() if stride <= last]
        self.model = create_timm_features(
            model_name,
            _stage_indices(model_name, self._stage_names),
            pretrained,
            pretrained_file,
            in_chans=in_channels,
            drop_path_rate=drop_path_rate,
        )
        self.out_features = [s for s in self._stage_names if s in out_features]
        channels = dict(zip(self._stage_names, self.model.feature_info.channels()))
        self.out_feature_channels = {s: channels[s] for s in self.out_features}
        if norm == "FrozenBN":
            self.model = timm_layers().freeze_batch_norm_2d(self.model)
        elif norm == "SyncBN":
            self.model = timm_layers().convert_sync_batchnorm(self.model)
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec) -> dict:
        timm_cfg = cfg.MODEL.TIMM
        return dict(
            model_name=timm_cfg.NAME,
            pretrained=timm_cfg.PRETRAINED,
            pretrained_file=timm_cfg.PRETRAINED_FILE,
            out_features=timm_cfg.OUT_FEATURES,
            norm=timm_cfg.NORM,
            freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
            in_channels=input_shape.channels,
            drop_path_rate=timm_cfg.DROP_PATH_RATE,
        )

    def stage_children(self) -> Dict[str, List[str]]:
        """The names of the children of timm's feature model that make up each stage:
        "stem" (everything before res2's module) and "res2" .. (each up to the module whose
        output is its feature)."""
        stages, current = {}, []
        names = iter(self._stage_names)
        for child_name, _ in self.model.named_children():
            current.append(child_name)
            if child_name in self.model.return_layers:
                stage = next(names)
                if stage == "res2":
                    stages["stem"], current = current[:-1], current[-1:]
                stages[stage], current = current, []
        return stages

    def freeze(self, freeze_at: int = 0) -> "TimmBackbone":
        """Freeze the stem (``freeze_at >= 1``) and res2 .. res<freeze_at> (``freeze_at >= 2``):
        no gradients, and their BatchNorms frozen, as detectron2's ``ResNet.freeze``."""
        stages = self.stage_children()
        frozen = (["stem"] if freeze_at >= 1 else []) + [f"res{k}" for k in range(2, freeze_at + 1)]
        for stage in frozen:
            for child_name in stages.get(stage, []):
                child = getattr(self.model, child_name)
                child.requires_grad_(False)
                setattr(self.model, child_name, timm_layers().freeze_batch_norm_2d(child))
        return self

    def output_shape(self) -> Dict[str, ShapeSpec]:
        channels, strides = self.out_feature_channels, _STAGE_STRIDES
        return {s: ShapeSpec(channels=channels[s], stride=strides[s]) for s in self.out_features}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = dict(zip(self._stage_names, self.model(x)))
        return {name: features[name] for name in self.out_features}


def add_timm_backbone_config(cfg: CfgNode) -> None:
    """Add the MODEL.TIMM.* keys of ``build_timm_backbone`` / ``build_timm_fpn_backbone``
    (the frozen stages are MODEL.BACKBONE.FREEZE_AT, the FPN detectron2's MODEL.FPN.*)."""
    cfg.MODEL.TIMM = CfgNode()
    cfg.MODEL.TIMM.NAME = "gcresnet50t"
    cfg.MODEL.TIMM.PRETRAINED = True
    cfg.MODEL.TIMM.PRETRAINED_FILE = ""
    cfg.MODEL.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.TIMM.NORM = "FrozenBN"
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0


@BACKBONE_REGISTRY.register()
def build_timm_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> TimmBackbone:
    """:class:`TimmBackbone` from MODEL.TIMM.* (:func:`add_timm_backbone_config`)."""
    return TimmBackbone(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """:class:`TimmBackbone` with detectron2's FPN (MODEL.FPN.*) on top."""
    return build_fpn(cfg, TimmBackbone(cfg, input_shape))
