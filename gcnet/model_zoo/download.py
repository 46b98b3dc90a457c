"""Verified downloads into the local cache."""
import hashlib
import logging
import os
from urllib.parse import urlparse

from iopath.common.download import download
from iopath.common.file_io import file_lock, get_cache_dir

__all__ = ["cache_root", "download_verified", "sha256sum"]

logger = logging.getLogger(__name__)


def cache_root() -> str:
    """gcnet's folder in iopath's cache ($FVCORE_CACHE, or ~/.torch/iopath_cache)."""
    return os.path.join(get_cache_dir(), "gcnet")


def sha256sum(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, sha256: str, cache_dir: str = "", *, progress: bool = True) -> str:
    """Return the local copy of ``url``, downloading it first if it is not in the cache.

    The file is downloaded to a temporary name (removed if the download is interrupted),
    its sha256 checked against ``sha256`` (the full digest, or the prefix that torchvision
    and OpenMMLab put in their file names; "" when upstream publishes none, which is
    logged), and only then renamed into the cache; a file that fails the check is deleted.
    A cached file is returned without any request.

    Raises:
        OSError: the download failed (the message names the URL and the HTTP error).
        ValueError: the downloaded file does not have the expected sha256.
    """
    if any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"sha256 for {url} must be a hex digest or prefix, got {sha256!r}")
    parsed = urlparse(url)
    filename = os.path.basename(parsed.path)
    if not filename:
        raise ValueError(f"Cannot name the download of {url}: its path has no file name")
    folder = os.path.join(cache_dir or cache_root(), "downloads", parsed.netloc, os.path.dirname(parsed.path).lstrip("/"))
    path = os.path.join(folder, filename)
    with file_lock(path):
        if os.path.isfile(path):
            return path
        unverified = path + ".unverified"
        if os.path.exists(unverified):  # left by a process killed while verifying
            os.remove(unverified)
        try:
            download(url, folder, filename=os.path.basename(unverified), progress=progress)
        except OSError as e:
            raise OSError(f"Could not download {url}: {e}") from e
        digest = sha256sum(unverified)
        if not sha256:
            logger.warning(f"{url} has no published checksum; its sha256 is {digest}")
        elif not digest.startswith(sha256.lower()):
            os.remove(unverified)
            raise ValueError(
                f"Downloaded {url} has sha256 {digest}, expected {sha256}...; "
                "the file was deleted. Retry, or report a changed upstream file."
            )
        os.replace(unverified, path)
    logger.info(f"Downloaded {url} to {path} (sha256 {digest[:12]}... verified)")
    return path
