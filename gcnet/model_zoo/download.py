"""Verified downloads into the local cache."""
import logging
import os
from urllib.parse import urlparse

from iopath.common.file_io import file_lock, get_cache_dir

from gcnet.utils.download import check_sha256, download_file, sha256sum
from gcnet.utils.file_io import atomic_write

__all__ = ["cache_root", "cached_file_problem", "download_verified", "sha256sum", "DIGEST_SUFFIX"]

# Beside each cached download: the sha256 it had when it arrived.
DIGEST_SUFFIX = ".sha256"

logger = logging.getLogger(__name__)


def cache_root() -> str:
    """gcnet's folder in iopath's cache ($FVCORE_CACHE, or ~/.torch/iopath_cache)."""
    return os.path.join(get_cache_dir(), "gcnet")


def cached_file_problem(path: str, sha256: str) -> str:
    """Why the cached ``path`` cannot be used ("" if it can): its sha256 must start with
    ``sha256`` (the manifest's digest or prefix) or, where none is published, equal the digest
    recorded beside it (``<path>.sha256``) when it was downloaded. A file without either (a
    copy put there by hand for a source without a published digest) is taken as it is and its
    digest recorded."""
    digest = sha256sum(path)
    recorded_file = path + DIGEST_SUFFIX
    expected = sha256 or (open(recorded_file).read().strip() if os.path.isfile(recorded_file) else "")
    if expected and not digest.startswith(expected):
        return f"its sha256 is {digest}, expected {expected}..."
    if not os.path.isfile(recorded_file):
        atomic_write(recorded_file, lambda f: f.write(digest.encode()))
    return ""


def download_verified(url: str, sha256: str, cache_dir: str = "", *, progress: bool = True) -> str:
    """Return the local copy of ``url``, downloading it first if it is not in the cache.

    The download is checked against ``sha256`` (the full digest, or the prefix that
    torchvision and OpenMMLab put in their file names; "" when upstream publishes none, which
    is logged) before it enters the cache (:func:`gcnet.utils.download.download_file`). A
    cached file is checked again on every use (:func:`cached_file_problem`) and downloaded
    afresh when it does not match: a truncated or altered file, or a digest changed in the
    manifest, never goes unnoticed.

    Raises:
        DownloadError: the download could not be made; the message says where to put a copy
            of the file made on another machine.
        ValueError: the downloaded file does not have the expected sha256.
    """
    check_sha256(sha256, url)
    parsed = urlparse(url)
    filename = os.path.basename(parsed.path)
    if not filename:
        raise ValueError(f"Cannot name the download of {url}: its path has no file name")
    folder = os.path.join(cache_dir or cache_root(), "downloads", parsed.netloc, os.path.dirname(parsed.path).lstrip("/"))
    path = os.path.join(folder, filename)
    with file_lock(path):
        if os.path.isfile(path):
            problem = cached_file_problem(path, sha256)
            if not problem:
                return path
            logger.warning(f"The cached {path} cannot be used ({problem}); downloading {url} again")
            os.remove(path)
        way_out = f"Without network access, download it elsewhere and copy it to {path} (its sha256 is checked on use)."
        download_file(url, path, sha256, way_out=way_out, progress=progress)
        digest = sha256sum(path)
        atomic_write(path + DIGEST_SUFFIX, lambda f: f.write(digest.encode()))
        if sha256:
            logger.info(f"Downloaded {url} to {path} (sha256 verified)")
        else:
            logger.warning(f"Downloaded {url} to {path}; it has no published checksum, its sha256 is {digest}")
    return path
