"""The ``gcnet://`` path handler: checkpoints of the manifest by name, downloaded, verified and
converted to gcnet's format on first use (both cached)."""

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlparse

import torch
from iopath.common.file_io import PathHandler, file_lock

from gcnet.utils.download import sha256sum
from gcnet.utils.download_cache import cache_root, download_verified, import_file
from gcnet.utils.file_io import atomic_write
from gcnet.utils.safe_load import UnsafeCheckpointError, load_checkpoint_file

from .converters import CONVERTERS
from .manifest import CheckpointSource, default_manifest, unknown_name_error

__all__ = ["GCNetHandler", "load_upstream_checkpoint", "convert_upstream_file", "save_checkpoint"]

logger = logging.getLogger(__name__)


def load_upstream_checkpoint(path: str) -> Mapping[str, Any]:
    """Load a ``.pth`` file as the releases wrote it (torch's legacy or zip format, mmcv's or
    mmengine's checkpoint dict) with :func:`gcnet.utils.safe_load.load_checkpoint_file`:
    tensors, plain containers, numpy arrays and mmengine's HistoryBuffer as data, never
    arbitrary pickled code."""
    try:
        return load_checkpoint_file(path)
    except UnsafeCheckpointError:
        raise
    except Exception as e:
        raise ValueError(f"Cannot load checkpoint {path}: it is truncated, corrupt or not a weights file ({e})") from e


def convert_upstream_file(converter: str, upstream_file: str) -> Dict[str, Any]:
    """Load ``upstream_file`` and convert it with ``CONVERTERS[converter]``."""
    return CONVERTERS[converter](load_upstream_checkpoint(upstream_file))


def save_checkpoint(checkpoint: Mapping[str, Any], output_file: str) -> None:
    """Write ``checkpoint`` to ``output_file`` atomically (tensors and plain containers only,
    loadable with ``torch.load(weights_only=True)``)."""
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    atomic_write(output_file, lambda f: torch.save(checkpoint, f))


class GCNetHandler(PathHandler):
    """Resolves ``gcnet://<name>`` to a local converted checkpoint.

    Registered in detectron2's ``PathManager`` when ``gcnet.model_zoo`` is imported, so
    ``DetectionCheckpointer(model).load("gcnet://<name>")`` and
    ``train.init_checkpoint = "gcnet://<name>"`` work.

    Args:
        sources: name -> :class:`CheckpointSource` (default: the manifest's ImageNet backbones
            and zoo models).
        cache_dir: where downloads and converted files go (default: :func:`cache_root`).
    """

    PREFIX = "gcnet://"

    def __init__(self, sources: Optional[Mapping[str, CheckpointSource]] = None, cache_dir: str = ""):
        super().__init__()
        self._sources = dict(sources) if sources is not None else None
        self.cache_dir = cache_dir

    @property
    def sources(self) -> Mapping[str, CheckpointSource]:
        if self._sources is None:
            self._sources = default_manifest().sources()
        return self._sources

    def _get_supported_prefixes(self) -> List[str]:
        return [self.PREFIX]

    def source(self, path: str) -> CheckpointSource:
        name = path[len(self.PREFIX) :]
        if name not in self.sources:
            raise unknown_name_error(name, self.sources)
        return self.sources[name]

    def download(self, path: str) -> str:
        """The verified upstream file of ``path``, downloaded on first use.

        Raises:
            DownloadError: the download could not be made; the message says how to import a
                copy made on another machine (:meth:`import_upstream`).
        """
        source = self.source(path)
        way_out = (
            "Without network access, download it on another machine and run: python -m gcnet.model_zoo download "
            f"{source.name} --file /path/to/{os.path.basename(urlparse(source.url).path)}"
        )
        return download_verified(source.url, source.expected_sha256, self.cache_dir or cache_root(), way_out=way_out)

    def import_upstream(self, path: str, local_file: str) -> str:
        """Put ``local_file``, the upstream file of ``path`` downloaded on another machine, in
        the cache after checking its sha256 (:func:`gcnet.utils.download_cache.import_file`)."""
        source = self.source(path)
        return import_file(source.url, local_file, source.expected_sha256, self.cache_dir or cache_root())

    def converted_path(self, path: str, force: bool = False) -> str:
        """The local converted checkpoint of ``path``, downloaded, verified and converted on
        first use (or again with ``force``).

        Beside it, ``<file>.json`` records what it was made from (the URL, the manifest's
        sha256, the upstream file's digest, the converter) and its own digest; it is made
        again when any of these no longer holds (a changed manifest entry, a truncated or
        altered file)."""
        source = self.source(path)
        converted = os.path.join(self.cache_dir or cache_root(), "converted", source.name + ".pth")
        with file_lock(converted):
            problem = "forced" if force else self._conversion_problem(source, converted)
            if problem:
                if os.path.isfile(converted):
                    logger.warning(f"Converting {source.name} again: {converted} {problem}")
                upstream = self.download(path)
                save_checkpoint(convert_upstream_file(source.converter, upstream), converted)
                record = dict(
                    self._conversion_key(source), source_sha256=sha256sum(upstream), sha256=sha256sum(converted)
                )
                atomic_write(converted + ".json", lambda f: f.write(json.dumps(record, indent=1).encode()))
        return converted

    @staticmethod
    def _conversion_key(source: CheckpointSource) -> Dict[str, str]:
        return {"url": source.url, "manifest_sha256": source.sha256, "converter": source.converter}

    def _conversion_problem(self, source: CheckpointSource, converted: str) -> str:
        """Why the cached ``converted`` file cannot be used for ``source`` ("" if it can)."""
        if not os.path.isfile(converted):
            return "is missing"
        try:
            with open(converted + ".json") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return "has no record of its source"
        if any(record.get(k) != v for k, v in self._conversion_key(source).items()):
            return "was made from another upstream file or converter than the manifest names now"
        if sha256sum(converted) != record.get("sha256"):
            return "does not have the sha256 it was written with (truncated or altered)"
        return ""

    @staticmethod
    def _refuse_options(path: str, kwargs: Mapping[str, Any]) -> None:
        if kwargs:
            raise ValueError(f"{path}: gcnet:// paths take no {', '.join(sorted(kwargs))} option")

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._refuse_options(path, kwargs)
        return self.converted_path(path, force)

    def _open(self, path: str, mode: str = "rb", buffering: int = -1, **kwargs: Any):
        self._refuse_options(path, kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path}: gcnet:// paths are read-only, got mode {mode!r}")
        return open(self.converted_path(path), mode, buffering)
