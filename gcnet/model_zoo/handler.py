"""The ``gcnet://`` path handler: upstream checkpoints by name, downloaded, verified and
converted to detectron2's format on first use (both cached)."""
import difflib
import os
import pickle
from typing import Any, List, Mapping, Optional

import torch
from iopath.common.file_io import PathHandler, file_lock

from .converters import CONVERTERS
from .download import cache_root, download_verified
from .imagenet import IMAGENET_MODELS, CheckpointSource

__all__ = ["GCNetHandler", "load_upstream_checkpoint"]


def load_upstream_checkpoint(path: str) -> Mapping[str, Any]:
    """Load a ``.pth`` file with ``torch.load(weights_only=True)``: tensors and plain
    containers only, never arbitrary pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"Cannot load checkpoint {path}: {e}") from e


class GCNetHandler(PathHandler):
    """Resolves ``gcnet://<name>`` to a local detectron2-format ``.pkl`` file.

    Registered in detectron2's ``PathManager`` when ``gcnet.model_zoo`` is imported, so
    ``DetectionCheckpointer(model).load("gcnet://<name>")`` and
    ``train.init_checkpoint = "gcnet://<name>"`` work.

    Args:
        sources: name -> :class:`CheckpointSource`.
        cache_dir: where downloads and converted files go (default: :func:`cache_root`).
    """

    PREFIX = "gcnet://"

    def __init__(self, sources: Mapping[str, CheckpointSource] = IMAGENET_MODELS, cache_dir: str = ""):
        super().__init__()
        self.sources = dict(sources)
        self.cache_dir = cache_dir

    def _get_supported_prefixes(self) -> List[str]:
        return [self.PREFIX]

    def source(self, path: str) -> CheckpointSource:
        name = path[len(self.PREFIX) :]
        if name not in self.sources:
            close = difflib.get_close_matches(name, list(self.sources), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown model {path!r}{hint} (known: {len(self.sources)} names)")
        return self.sources[name]

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        source = self.source(path)
        cache = self.cache_dir or cache_root()
        converted = os.path.join(cache, "converted", path[len(self.PREFIX) :] + ".pkl")
        with file_lock(converted):
            if force or not os.path.isfile(converted):
                raw = download_verified(source.url, source.sha256, cache)
                checkpoint = CONVERTERS[source.converter](load_upstream_checkpoint(raw))
                tmp = f"{converted}.tmp{os.getpid()}"
                with open(tmp, "wb") as f:
                    pickle.dump(checkpoint, f)
                os.replace(tmp, converted)
        return converted

    def _open(self, path: str, mode: str = "rb", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path}: gcnet:// paths are read-only, got mode {mode!r}")
        return open(self._get_local_path(path), mode, buffering)
