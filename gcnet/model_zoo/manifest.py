"""The model zoo manifest (``model_zoo/manifest.yaml``): every checkpoint gcnet:// resolves."""

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlparse

import yaml

from .converters import CONVERTERS

__all__ = [
    "CheckpointSource",
    "UpstreamRule",
    "ZooModel",
    "Manifest",
    "load_manifest",
    "resource_path",
    "unknown_name_error",
]

PACKAGE_RESOURCES = Path(__file__).resolve().parent / "resources"
REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS = ("instance_segmentation", "semantic_segmentation")


def resource_path(relative: str) -> Path:
    """A file of the repository (``configs/...``, ``model_zoo/manifest.yaml``): from the
    installed package, else from the source checkout."""
    for root in (PACKAGE_RESOURCES, REPO_ROOT):
        path = root / relative
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative} is neither in {PACKAGE_RESOURCES} nor in {REPO_ROOT}")


# torchvision and OpenMMLab end their file names with the first 8 hex digits of the file's
# sha256: <stem>-<digits>.pth.
FILE_NAME_DIGEST = re.compile(r"-([0-9a-f]{8,64})\.\w+$")
FULL_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckpointSource:
    """An upstream checkpoint: where it is, its full sha256 (pinned; empty when it is not
    known), and the converter (a key of ``gcnet.model_zoo.converters.CONVERTERS``) that turns
    it into a gcnet checkpoint."""

    name: str
    url: str
    sha256: str
    converter: str
    description: str = ""

    @property
    def file_digest(self) -> str:
        """The sha256 prefix in the URL's file name (``<stem>-<hex digits>.pth``, as
        torchvision and OpenMMLab name their files); "" if it has none."""
        match = FILE_NAME_DIGEST.search(os.path.basename(urlparse(self.url).path))
        return match.group(1) if match else ""

    @property
    def expected_sha256(self) -> str:
        """What a download is checked against: the full sha256, else the file name's prefix
        (which guards against a corrupt file, not against a forged one), else nothing."""
        return self.sha256 or self.file_digest


@dataclass(frozen=True)
class ZooModel(CheckpointSource):
    """A trained model of the zoo (see the header of ``model_zoo/manifest.yaml``)."""

    task: str = ""
    dataset: str = ""
    config: str = ""
    config_overrides: Tuple[str, ...] = ()
    upstream: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Mapping] = field(default_factory=dict)
    published: Mapping[str, float] = field(default_factory=dict)
    test_rules: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def metric_overrides(self, metric: str) -> Tuple[str, ...]:
        """The overrides that evaluate ``metric`` (a key of ``metrics``, such as "mIoU
        (ms+flip)"), beyond the entry's ``config_overrides``; () for most metrics."""
        if metric not in self.metrics:
            raise ValueError(f"{self.name} has no metric {metric!r}; its metrics: {', '.join(self.metrics)}")
        return tuple(self.metrics[metric].get("config_overrides", ()))


@dataclass(frozen=True)
class UpstreamRule:
    """An upstream test-time rule: what it is, and whether gcnet reproduces it."""

    reproduced: bool
    text: str


@dataclass(frozen=True)
class Manifest:
    notes: Mapping[str, str]
    imagenet: Dict[str, CheckpointSource]
    models: Dict[str, ZooModel]
    test_rules: Mapping[str, UpstreamRule] = field(default_factory=dict)
    # upstream repository -> {"hardware": what its models were trained on}, in MODEL_ZOO.md's order
    repositories: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def sources(self) -> Dict[str, CheckpointSource]:
        """Every name gcnet:// resolves: the ImageNet backbones and the zoo models."""
        return {**self.imagenet, **self.models}

    def hosts(self) -> List[str]:
        """The hosts the checkpoints are downloaded from."""
        return sorted({urlparse(s.url).netloc for s in self.sources().values()})

    def model(self, name: str) -> ZooModel:
        if name not in self.models:
            raise unknown_name_error(name, self.models)
        return self.models[name]


def unknown_name_error(name: str, known: Mapping) -> ValueError:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return ValueError(f"Unknown model {name!r}{hint} (python -m gcnet.model_zoo list shows all {len(known)})")


def _check(path: Path, entry: Mapping, required: Tuple[str, ...]) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: an entry is {entry!r}, not a mapping of {', '.join(required)}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ValueError(f"{path}: entry {entry.get('name', '?')!r} lacks {missing}")
    if entry["converter"] not in CONVERTERS:
        raise ValueError(
            f"{path}: entry {entry['name']!r} has unknown converter {entry['converter']!r}; known: {sorted(CONVERTERS)}"
        )
    _check_digest(path, entry)


def _check_digest(path: Path, entry: Mapping) -> None:
    """An entry's sha256 is absent or a full digest (64 hex digits, quoted), agrees with the
    digest in its file name, and is there when the URL is plain http."""
    name, sha256, url = entry["name"], entry.get("sha256", ""), entry["url"]
    if not isinstance(sha256, str):
        raise ValueError(
            f"{path}: entry {name!r}: YAML read sha256 {sha256!r} as {type(sha256).__name__}, not as text: "
            "quote it (sha256: '...')"
        )
    if sha256 and not FULL_SHA256.fullmatch(sha256):
        raise ValueError(
            f"{path}: entry {name!r}: sha256 {sha256!r} is not a full sha256 (64 lower-case hex digits); "
            "give the full digest or none (the digits in an OpenMMLab or torchvision file name are checked from "
            "its URL)"
        )
    source = CheckpointSource(name, url, sha256, entry["converter"])
    if sha256 and not sha256.startswith(source.file_digest):
        raise ValueError(
            f"{path}: entry {name!r}: sha256 {sha256} does not start with {source.file_digest}, as its file name"
        )
    if urlparse(url).scheme != "https" and not sha256:
        raise ValueError(
            f"{path}: entry {name!r} downloads {url} without https and without a sha256: use https, or pin its sha256"
        )


def _test_rules(path: Path, data: Mapping) -> Dict[str, UpstreamRule]:
    rules = {}
    for key, rule in data.get("test_rules", {}).items():
        fields = rule if isinstance(rule, dict) else {}
        if not isinstance(fields.get("reproduced"), bool) or not isinstance(fields.get("text"), str):
            raise ValueError(f"{path}: test rule {key!r} must have reproduced (true or false) and text, got {rule!r}")
        rules[key] = UpstreamRule(reproduced=fields["reproduced"], text=fields["text"])
    return rules


def _check_metrics(path: Path, entry: Mapping) -> None:
    """Each metric has a value and a source, and optionally the config_overrides it is evaluated
    with (a list of key=value strings)."""
    for metric, fields in entry["metrics"].items():
        overrides = fields.get("config_overrides", []) if isinstance(fields, dict) else None
        if not isinstance(fields, dict) or not {"value", "source"} <= set(fields):
            raise ValueError(
                f"{path}: entry {entry['name']!r}: metric {metric!r} must have value and source, got {fields!r}"
            )
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise ValueError(
                f"{path}: entry {entry['name']!r}: config_overrides of metric {metric!r} must be a list of key=value, "
                f"got {overrides!r}"
            )


def _check_references(path: Path, entry: Mapping, field_name: str, known: Mapping) -> None:
    unknown = [n for n in entry.get(field_name, []) if n not in known]
    if unknown:
        raise ValueError(f"{path}: entry {entry['name']!r} refers to unknown {field_name} {unknown}")


def _read_yaml(path: Path) -> dict:
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ValueError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with imagenet_backbones and models, got {type(data).__name__}")
    return data


def load_manifest(path: Optional[Path] = None) -> Manifest:
    """Read and check the manifest (default: ``model_zoo/manifest.yaml``)."""
    path = Path(path) if path is not None else resource_path("model_zoo/manifest.yaml")
    data = _read_yaml(path)
    notes, test_rules = data.get("notes", {}), _test_rules(path, data)
    imagenet, models = {}, {}
    for entry in data.get("imagenet_backbones", []):
        _check(path, entry, ("name", "url", "converter"))
        imagenet[entry["name"]] = CheckpointSource(**{"sha256": "", **entry})
    for entry in data.get("models", []):
        _check(path, entry, ("name", "task", "dataset", "config", "upstream", "url", "converter", "metrics"))
        if entry["task"] not in TASKS:
            raise ValueError(f"{path}: entry {entry['name']!r} has unknown task {entry['task']!r}; known: {TASKS}")
        _check_metrics(path, entry)
        _check_references(path, entry, "notes", notes)
        _check_references(path, entry, "test_rules", test_rules)
        entry = {
            "sha256": "",
            **entry,
            **{k: tuple(entry.get(k, ())) for k in ("config_overrides", "test_rules", "notes")},
        }
        models[entry["name"]] = ZooModel(**entry)
    duplicated = set(imagenet) & set(models)
    if duplicated or len(imagenet) + len(models) != len(data.get("imagenet_backbones", [])) + len(
        data.get("models", [])
    ):
        raise ValueError(f"{path}: names must be unique; repeated: {sorted(duplicated) or 'within a list'}")
    return Manifest(
        notes=notes, imagenet=imagenet, models=models, test_rules=test_rules, repositories=data.get("repositories", {})
    )


@functools.lru_cache(maxsize=None)
def default_manifest() -> Manifest:
    return load_manifest()
