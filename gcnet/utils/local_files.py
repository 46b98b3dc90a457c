"""The local file of a path or URL, and whether a checkpoint there may be unpickled.

``http(s)://`` URLs and detectron2's ``detectron2://`` names are downloaded into gcnet's
cache (:func:`gcnet.utils.download_cache.download_verified`: with timeouts, under a path that
depends on the host, with a record of where the bytes came from); other ``<scheme>://`` paths
go to a path handler (``gcnet://``: the model zoo's). Whether a pickled ``.pkl`` may be read
is decided on where its bytes came from (:func:`pickle_refusal`), never on the path typed or
the place it is cached.
"""

import os
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

from detectron2.utils.file_io import Detectron2Handler

from .download import DownloadError
from .download_cache import discard, download_verified, read_provenance
from .safe_load import UnsafeCheckpointError

__all__ = [
    "LOCAL_COPY_WAY_OUT",
    "TRUSTED_PICKLE_HOSTS",
    "LocalCheckpoint",
    "local_checkpoint",
    "local_file",
    "pickle_refusal",
    "remote_url",
]

# detectron2's model zoo (detectron2:// and its ImageNet models) publishes pickled .pkl files.
TRUSTED_PICKLE_HOSTS = ("dl.fbaipublicfiles.com",)
PICKLE_RULE = (
    ".pkl files run code when loaded and are only read from local paths you name or, over https, "
    + ", ".join(TRUSTED_PICKLE_HOSTS)
)
# What to do when a checkpoint cannot be downloaded ({name}: its file name).
LOCAL_COPY_WAY_OUT = (
    "Without network access, copy the file to this machine and pass its path (train.init_checkpoint=/path/to/{name})"
)


@dataclass(frozen=True)
class LocalCheckpoint:
    """``path``: the local file of a checkpoint; ``pickle_refusal``: why a pickled ``.pkl``
    there may not be unpickled, None if it may."""

    path: str
    pickle_refusal: Optional[str]


def remote_url(path: str) -> str:
    """The URL that ``path`` names: a ``detectron2://`` name's file of detectron2's model zoo,
    else ``path`` itself."""
    if path.startswith(Detectron2Handler.PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + path[len(Detectron2Handler.PREFIX) :]
    return path


def pickle_refusal(source: str) -> Optional[str]:
    """Why a ``.pkl`` whose bytes come from ``source`` (a local path the user names, or the
    URL they were downloaded from) may not be unpickled; None if it may: a local file, or one
    from detectron2's model zoo over https. (Its content is then still read by
    :func:`gcnet.utils.safe_load.load_pickle_file`, which builds numpy arrays and containers
    only.)"""
    parsed = urlparse(remote_url(source))
    if parsed.scheme in ("", "file"):
        return None
    trusted_host = parsed.hostname in TRUSTED_PICKLE_HOSTS and parsed.port is None and not parsed.username
    return None if parsed.scheme == "https" and trusted_host else PICKLE_RULE


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _without_file_scheme(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def local_file(path: str, path_manager, *, way_out: str = "") -> str:
    """The local file of ``path``: itself; an http(s) URL's cached download; a
    ``detectron2://`` name's; or what ``path_manager`` resolves another ``<scheme>://`` path
    to.

    Raises:
        FileNotFoundError: a local ``path`` does not exist.
        DownloadError: the download failed; the message ends with ``way_out``.
    """
    if _is_local(path):
        if not os.path.isfile(_without_file_scheme(path)):
            raise FileNotFoundError(f"{path}: no such file")
        return _without_file_scheme(path)
    url = remote_url(path)
    if urlparse(url).scheme in ("http", "https"):
        return download_verified(url, way_out=way_out)
    try:
        return path_manager.get_local_path(path)
    except DownloadError as e:
        raise (e.with_way_out(f"{e.way_out.rstrip('.')}; {way_out}") if way_out else e) from None
    except OSError as e:
        raise DownloadError(path, str(getattr(e, "reason", None) or e), way_out) from e


def local_checkpoint(path: str, path_manager) -> LocalCheckpoint:
    """The local file of the checkpoint ``path`` (:func:`local_file`) and whether it may be
    unpickled: a ``.pkl`` is read only when :func:`pickle_refusal` accepts where its bytes came
    from. One named by an untrusted URL is refused before anything is downloaded; one that a
    trusted URL redirected elsewhere is deleted and refused.

    Raises:
        FileNotFoundError: a local ``path`` does not exist.
        DownloadError: the download failed; the message names the URL, the reason and the
            way out (a local copy).
        UnsafeCheckpointError: a ``.pkl`` from an untrusted source.
    """
    if _is_local(path):
        if not os.path.isfile(_without_file_scheme(path)):
            raise FileNotFoundError(f"Checkpoint {path} not found")
        return LocalCheckpoint(_without_file_scheme(path), None)
    url = remote_url(path)
    name = os.path.basename(urlparse(url).path)
    refusal = pickle_refusal(url)
    if refusal and name.endswith(".pkl"):
        raise UnsafeCheckpointError(f"Refusing to unpickle {url}: {refusal}")
    if urlparse(url).scheme not in ("http", "https"):
        return LocalCheckpoint(local_file(path, path_manager), refusal)
    local = local_file(url, path_manager, way_out=LOCAL_COPY_WAY_OUT.format(name=name))
    source = read_provenance(local)
    came_from = (source.final_url or f"a copy of {source.copied_from}") if source else "an unrecorded source"
    refusal = pickle_refusal(source.final_url) if source and source.final_url else PICKLE_RULE
    if refusal and name.endswith(".pkl"):
        discard(local)
        raise UnsafeCheckpointError(f"Refusing to unpickle {url}: its bytes came from {came_from}; {refusal}")
    return LocalCheckpoint(local, refusal)
