"""Downloads that are verified, complete or absent, and that fail with a sentence.

A machine without network access (a cluster node, an air-gapped lab) gets a
:class:`DownloadError` whose message names the URL, the reason and what to do instead, which
the tools print as one line.
"""
import hashlib
import logging
import os
import urllib.error

from iopath.common.download import download

__all__ = ["DownloadError", "download_file", "sha256sum", "check_sha256"]

logger = logging.getLogger(__name__)


class DownloadError(OSError):
    """A download that could not be made (no network, DNS failure, HTTP error). Its message
    names the URL, the reason and the way out."""


def sha256sum(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(sha256: str, what: str) -> str:
    """``sha256`` in lower case, after checking it is a hex digest or a prefix of one."""
    if any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"sha256 for {what} must be a hex digest or prefix, got {sha256!r}")
    return sha256.lower()


def _reason(error: OSError) -> str:
    """What went wrong, in words: the HTTP status, the network error, or the OS error."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error)


def download_file(url: str, path: str, sha256: str = "", *, way_out: str = "", progress: bool = True) -> str:
    """Download ``url`` to ``path`` and return ``path``.

    The file arrives under a temporary name and is renamed to ``path`` only once complete and,
    when ``sha256`` is given (a full digest or a prefix of one), once its digest matches; a
    file that does not match is deleted. ``path`` is never left half-written.

    Raises:
        DownloadError: the download could not be made; the message names ``url``, the reason
            and ``way_out`` (what the user can do instead, e.g. "pass a local file with ...").
        ValueError: the downloaded file does not have the expected sha256.
    """
    sha256 = check_sha256(sha256, url)
    folder, name = os.path.split(os.path.abspath(path))
    unverified = f"{name}.unverified"
    if os.path.exists(os.path.join(folder, unverified)):  # left by a process killed while verifying
        os.remove(os.path.join(folder, unverified))
    try:
        downloaded = download(url, folder, filename=unverified, progress=progress)
    except (OSError, ValueError) as e:  # urllib raises ValueError for a malformed URL
        raise DownloadError(f"Could not download {url}: {_reason(e)}. {way_out}".strip()) from e
    digest = sha256sum(downloaded)
    if sha256 and not digest.startswith(sha256):
        os.remove(downloaded)
        raise ValueError(
            f"Downloaded {url} has sha256 {digest}, expected {sha256}...; the file was deleted. "
            "Retry, or report a changed upstream file."
        )
    os.replace(downloaded, path)
    logger.debug(f"Downloaded {url} to {path} (sha256 {digest[:12]}...)")
    return path
