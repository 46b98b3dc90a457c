"""Verified downloads into the local cache."""
import logging
import os
from urllib.parse import urlparse

from iopath.common.file_io import file_lock, get_cache_dir

from gcnet.utils.download import check_sha256, download_file, sha256sum

__all__ = ["cache_root", "download_verified", "sha256sum"]

logger = logging.getLogger(__name__)


def cache_root() -> str:
    """gcnet's folder in iopath's cache ($FVCORE_CACHE, or ~/.torch/iopath_cache)."""
    return os.path.join(get_cache_dir(), "gcnet")


def download_verified(url: str, sha256: str, cache_dir: str = "", *, progress: bool = True) -> str:
    """Return the local copy of ``url``, downloading it first if it is not in the cache.

    The download is checked against ``sha256`` (the full digest, or the prefix that
    torchvision and OpenMMLab put in their file names; "" when upstream publishes none, which
    is logged) before it enters the cache (:func:`gcnet.utils.download.download_file`). A
    cached file is returned without any request.

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
            return path
        way_out = f"Without network access, download it elsewhere and copy it to {path} (its sha256 is checked on use)."
        download_file(url, path, sha256, way_out=way_out, progress=progress)
        if sha256:
            logger.info(f"Downloaded {url} to {path} (sha256 verified)")
        else:
            logger.warning(f"Downloaded {url} to {path}; it has no published checksum, its sha256 is {sha256sum(path)}")
    return path
