"""What a prediction run is, fixed before it starts: its images (in a file that every process
reads), how they are cut into shards and batches, and what decides the predictions (the
model, its weights and the test-time input, the threshold). A run resumed in the same output
folder must have the same plan, so that its results are those of an uninterrupted run."""

import dataclasses
import hashlib
import json
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from omegaconf import OmegaConf

from gcnet.data.image_sources import ImageRecord
from gcnet.utils.argument_parser import DEFAULT_SHARD_SIZE

__all__ = ["PredictionPlan", "write_image_list", "read_image_list", "config_digest", "DEFAULT_SHARD_SIZE"]

# The plan's fields that, when they differ, make the folder's finished shards another run's;
# the words that say so.
_FIELD_NAMES = {
    "images": "images",
    "inputs_sha256": "input images",
    "config_sha256": "model, weights or test-time input (config)",
    "shard_size": "--shard-size",
    "batch_size": "--batch-size",
    "confidence_threshold": "--confidence-threshold",
}


@dataclasses.dataclass(frozen=True)
class PredictionPlan:
    """A run's images (``images`` of them, listed in a file whose digest is ``inputs_sha256``),
    cut into shards of ``shard_size`` in their order and, within a shard, into batches of
    ``batch_size`` (padding a batch to its largest image changes the predictions a little, so
    batches never straddle shards), predicted by the model and weights of ``config_sha256``
    with ``confidence_threshold``."""

    images: int
    inputs_sha256: str
    config_sha256: str
    shard_size: int = DEFAULT_SHARD_SIZE
    batch_size: int = 1
    confidence_threshold: float = 0.0

    @property
    def num_shards(self) -> int:
        return -(-self.images // self.shard_size)

    def shard_of(self, index: int) -> int:
        """The shard of the image at ``index`` (0-based) in the list."""
        return index // self.shard_size

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict) -> "PredictionPlan":
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})

    def difference(self, other: "PredictionPlan") -> str:
        """What differs from ``other`` (the plan of the run before), in words; "" if nothing."""
        for name, words in _FIELD_NAMES.items():
            then, now = getattr(other, name), getattr(self, name)
            if then != now:
                if name.endswith("sha256"):
                    return f"other {words}"
                return f"{words} {then} then, {now} now"
        return ""


def _line(record: ImageRecord) -> str:
    return json.dumps([record.image_id, record.path, record.file_name], ensure_ascii=False) + "\n"


def write_image_list(records: Sequence[ImageRecord], path: str) -> str:
    """Write ``records`` to ``path`` (one JSON line each, in order) and return the sha256 of
    the list."""
    digest = hashlib.sha256()
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            line = _line(record)
            digest.update(line.encode("utf-8"))
            f.write(line)
    return digest.hexdigest()


def read_image_list(path: str, keep: Callable[[int], bool] = lambda index: True) -> Iterator[Tuple[int, ImageRecord]]:
    """(index, record) of the images of a :func:`write_image_list` file whose index ``keep``
    keeps, read a line at a time (a process keeps only those of its shards)."""
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if keep(index):
                yield index, ImageRecord(*json.loads(line))


def _name(value) -> str:
    """A class or function of a config (a LazyCall's ``_target_``) by its import path; any
    other object by its repr."""
    if hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def _file_digest(path: str) -> Optional[str]:
    if "://" in path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_digest(cfg) -> str:
    """The sha256 of what decides a config's predictions: the model, the test-time input
    (``dataloader.test.mapper``), the test dataset (its classes and category ids), and the
    weights (``train.init_checkpoint``: the bytes of a local file, else its name), and whether
    it runs in bfloat16 (``train.inference.bfloat16``; the other inference options are exact)."""
    decisive: List = [
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.dataloader.test.mapper, resolve=True),
        OmegaConf.to_container(cfg.dataloader.test.dataset, resolve=True).get("names"),
        cfg.train.init_checkpoint,
        _file_digest(cfg.train.init_checkpoint),
        bool((cfg.train.get("inference", None) or {}).get("bfloat16", False)),
    ]
    text = json.dumps(decisive, sort_keys=True, default=_name)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
