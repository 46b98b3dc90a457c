"""Downloads kept in a local cache, each beside the record of where it came from.

The file of a URL is ``<cache>/downloads/<scheme>/<host>[+<port>]/<path>`` (:func:`cache_path`):
no two URLs share a file (but for a fragment or credentials, which do not change what a server
sends), and a file fetched from one address is never where another address's URL resolves, so
a file refused as untrusted can never be read later as a trusted one. Beside each file,
``<file>.source.json`` (:class:`Provenance`) records on arrival the URL asked for, the URL its
bytes came from after redirects, and their sha256, or, for a copy the user imported
(:func:`import_file`), the file it was copied from. A cached file is used only when its record
names the URL asked for and its sha256 is still the recorded one (and starts with the expected
digest): a file put there by hand or by another program, altered, truncated, or left by a
killed download is downloaded again.
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

from iopath.common.file_io import file_lock, get_cache_dir

from .download import check_sha256, download_file, sha256sum
from .file_io import PARTIAL_SUFFIX, atomic_path, atomic_write

__all__ = [
    "RECORD_SUFFIX",
    "Provenance",
    "cache_path",
    "cache_root",
    "cached_file_problem",
    "discard",
    "download_verified",
    "import_file",
    "read_provenance",
]

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".source.json"
_RESERVED_SUFFIXES = (RECORD_SUFFIX, ".lock")


@dataclass(frozen=True)
class Provenance:
    """Where a cached file came from: ``url`` (asked for), ``final_url`` (where its bytes came
    from, after redirects; "" for an imported copy), ``sha256`` (on arrival) and
    ``copied_from`` (the local file an imported copy was made from)."""

    url: str
    final_url: str
    sha256: str
    copied_from: str = ""


def cache_root() -> str:
    """gcnet's folder in iopath's cache ($FVCORE_CACHE, or ~/.torch/iopath_cache)."""
    return os.path.join(get_cache_dir(), "gcnet")


def cache_path(url: str, cache_dir: str = "") -> str:
    """Where the download of ``url`` is cached: ``<cache_dir>/downloads/<scheme>/<host>[+<port>]/
    <path>`` (a query adds a folder named by its hash).

    Raises:
        ValueError: ``url`` is not http(s), or its path names no file or has ``.``/``..``
            parts.
    """
    parsed = urlparse(url)
    try:
        host = parsed.hostname and parsed.hostname + (f"+{parsed.port}" if parsed.port is not None else "")
    except ValueError as e:  # a port that is not a number
        raise ValueError(f"Cannot download {url}: {e}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(f"Cannot download {url}: not an http or https URL with a host")
    parts = parsed.path.split("/")[1:]
    name = parts[-1] if parts else ""
    reserved = name.endswith(_RESERVED_SUFFIXES) or PARTIAL_SUFFIX in name  # the names of our own files
    if not name or reserved or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"Cannot download {url}: its path must name a file, without empty, '.' or '..' parts")
    if parsed.query:
        parts.insert(-1, "query-" + hashlib.sha256(parsed.query.encode()).hexdigest()[:16])
    return os.path.join(cache_dir or cache_root(), "downloads", parsed.scheme, host, *parts)


def read_provenance(path: str) -> Optional[Provenance]:
    """The record of the cached file ``path``; None if it has none (or an unreadable one)."""
    try:
        with open(path + RECORD_SUFFIX) as f:
            return Provenance(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def _write_provenance(path: str, provenance: Provenance) -> None:
    atomic_write(path + RECORD_SUFFIX, lambda f: f.write(json.dumps(dataclasses.asdict(provenance)).encode()))


def discard(path: str) -> None:
    """Remove the cached file ``path`` and its record."""
    for name in (path, path + RECORD_SUFFIX):
        if os.path.exists(name):
            os.remove(name)


def cached_file_problem(path: str, url: str, sha256: str = "") -> str:
    """Why the cached ``path`` cannot be used as the file of ``url`` ("" if it can): it needs a
    record of arrival from ``url``, the sha256 recorded then, and a sha256 that starts with
    ``sha256`` (a full digest or a prefix; "" checks the record only)."""
    record = read_provenance(path)
    if record is None:
        return "it has no record of where it came from"
    if record.url != url:
        return f"its record says it came from {record.url}"
    digest = sha256sum(path)
    if digest != record.sha256:
        return f"its sha256 is {digest}, not the {record.sha256} it arrived with"
    if not digest.startswith(sha256):
        return f"its sha256 is {digest}, expected {sha256}..."
    return ""


def download_verified(url: str, sha256: str = "", cache_dir: str = "", *, way_out: str = "", progress=None) -> str:
    """The local copy of ``url``, downloaded into the cache (:func:`cache_path`) first unless a
    usable copy is there (:func:`cached_file_problem`).

    The download is checked against ``sha256`` (a full digest, the prefix that torchvision and
    OpenMMLab put in their file names, or "" when upstream publishes none) before it enters the
    cache, where its :class:`Provenance` is recorded beside it.

    Raises:
        DownloadError: the download could not be made; the message ends with ``way_out``
            (default: how to import a copy made on another machine).
        ValueError: the downloaded file does not have the expected sha256, or ``url`` cannot
            be cached.
    """
    sha256 = check_sha256(sha256, url)
    path = cache_path(url, cache_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with file_lock(path):
        if os.path.isfile(path):
            problem = cached_file_problem(path, url, sha256)
            if not problem:
                return path
            logger.warning(f"The cached {path} cannot be used ({problem}); downloading {url} again")
        discard(path)
        way_out = way_out or "Without network access, download it on another machine and pass the local file instead."
        download = download_file(url, path, sha256, way_out=way_out, progress=progress)
        _write_provenance(path, Provenance(url=url, final_url=download.final_url, sha256=download.sha256))
    checked = "sha256 verified" if sha256 else f"no published checksum; its sha256 is {download.sha256}"
    logger.info(f"Downloaded {url} to {path} ({checked})")
    return path


def import_file(url: str, local_file: str, sha256: str = "", cache_dir: str = "") -> str:
    """Put a copy of ``local_file`` (the file of ``url``, downloaded on another machine) in the
    cache as the file of ``url``, after checking it against ``sha256`` (full, prefix or "");
    return its cached path. Its record names ``local_file``: a copy is never taken for a file
    downloaded from ``url``'s host.

    Raises:
        FileNotFoundError: ``local_file`` does not exist.
        ValueError: its sha256 does not start with ``sha256``.
    """
    sha256 = check_sha256(sha256, url)
    if not os.path.isfile(local_file):
        raise FileNotFoundError(f"{local_file}: no such file (the copy of {url} to import)")
    path = cache_path(url, cache_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with file_lock(path):
        with atomic_path(path) as tmp:  # a copy that fails its check leaves the cached file as it was
            shutil.copyfile(local_file, tmp)
            digest = sha256sum(tmp)
            if not digest.startswith(sha256):
                raise ValueError(f"{local_file} has sha256 {digest}, expected {sha256}...: it is not the file of {url}")
        provenance = Provenance(url=url, final_url="", sha256=digest, copied_from=os.path.abspath(local_file))
        _write_provenance(path, provenance)
    logger.info(f"Imported {local_file} as the file of {url} ({path})")
    return path
