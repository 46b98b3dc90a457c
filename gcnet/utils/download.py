"""Downloads with timeouts, complete or absent, that fail with one sentence.

Every file gcnet fetches comes through :func:`download_file`: urllib, through the proxies of
the environment (``https_proxy``, ``no_proxy``), with a timeout to connect and one for each
read (:func:`download_timeouts`, set by ``$GCNET_DOWNLOAD_TIMEOUT``), following at most 10
redirects and never one from https to plain http. The file arrives under a temporary name and
is renamed to its own only once it holds every byte the server announced and, when a digest is
given, has it: a server that stalls, closes early or sends less than its ``Content-Length``
leaves nothing behind. A machine without network access (a cluster node, an air-gapped lab)
gets a :class:`DownloadError` whose message names the URL, the reason and what to do instead,
which the tools print as one line.
"""

import functools
import hashlib
import http.client
import logging
import math
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional, Tuple
from urllib.parse import urlparse

from tqdm import tqdm

from .file_io import atomic_path

__all__ = [
    "DEFAULT_TIMEOUTS",
    "TIMEOUT_ENV",
    "Download",
    "DownloadError",
    "check_sha256",
    "download_file",
    "download_timeouts",
    "redirect_refusal",
    "unreachable",
    "sha256sum",
]

logger = logging.getLogger(__name__)

TIMEOUT_ENV = "GCNET_DOWNLOAD_TIMEOUT"
# Seconds to wait for a connection, and for each read of an open one.
DEFAULT_TIMEOUTS = (10.0, 60.0)
TIMEOUT_HINT = (
    f"{TIMEOUT_ENV}=CONNECT,READ sets the seconds to wait (default {DEFAULT_TIMEOUTS[0]:g},{DEFAULT_TIMEOUTS[1]:g})"
)
CHUNK_SIZE = 1 << 20


class DownloadError(OSError):
    """A download that could not be made (no network, DNS failure, HTTP error, a server that
    stalls or closes early). Its message names ``url``, the ``reason`` and the ``way_out``."""

    def __init__(self, url: str, reason: str, way_out: str = ""):
        super().__init__(f"Could not download {url}: {reason}. {way_out}".strip())
        self.url, self.reason, self.way_out = url, reason, way_out

    def __reduce__(self):
        return type(self), (self.url, self.reason, self.way_out)

    def with_way_out(self, way_out: str) -> "DownloadError":
        """The same failure, with another way out."""
        return DownloadError(self.url, self.reason, way_out)


@dataclass(frozen=True)
class Download:
    """A completed download: the file, the URL asked for, the URL its bytes came from (after
    redirects) and their sha256."""

    path: str
    url: str
    final_url: str
    sha256: str


def download_timeouts() -> Tuple[float, float]:
    """(seconds to connect, seconds to wait for each read): ``$GCNET_DOWNLOAD_TIMEOUT`` as
    ``CONNECT,READ`` or one number for both, else :data:`DEFAULT_TIMEOUTS`.

    Raises:
        ValueError: the variable is set to something else.
    """
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUTS
    try:
        seconds = [float(part) for part in value.split(",")]
    except ValueError:
        seconds = []
    if len(seconds) not in (1, 2) or not all(0 < s < math.inf for s in seconds):
        raise ValueError(
            f"{TIMEOUT_ENV}={value!r}: expected the seconds to wait for a connection and for data, "
            f"e.g. {TIMEOUT_ENV}=10,120, or one positive number for both"
        )
    return seconds[0], seconds[-1]


def sha256sum(path: str, chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(sha256: str, what: str) -> str:
    """``sha256`` in lower case, after checking it is a hex digest, the prefix of one, or
    empty."""
    if not isinstance(sha256, str) or any(c not in "0123456789abcdef" for c in sha256.lower()) or len(sha256) > 64:
        raise ValueError(f"sha256 for {what} must be a hex digest or a prefix of one, got {sha256!r}")
    return sha256.lower()


def redirect_refusal(from_url: str, to_url: str) -> Optional[str]:
    """Why a redirect from ``from_url`` to ``to_url`` is not followed (None if it is): only
    to http or https, and never from https to anything else."""
    if urlparse(to_url).scheme not in ("http", "https"):
        return f"{from_url} redirects to {to_url}, which is neither http nor https; refused"
    if urlparse(from_url).scheme == "https" and urlparse(to_url).scheme != "https":
        return f"{from_url} redirects to {to_url}, which is not https; refused"
    return None


class _ReadTimeout:
    """For an http.client connection class: its ``timeout`` is the time to connect (the TLS
    handshake included); each read then times out after ``read_timeout`` seconds."""

    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self):
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _TimedHTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _TimedHTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req):
        return self.do_open(functools.partial(_TimedHTTPConnection, read_timeout=self.read_timeout), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self.read_timeout = read_timeout
        self.context = ssl.create_default_context()

    def https_open(self, req):
        connection = functools.partial(_TimedHTTPSConnection, read_timeout=self.read_timeout)
        return self.do_open(connection, req, context=self.context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        refusal = redirect_refusal(req.full_url, newurl)
        if refusal:
            raise urllib.error.URLError(refusal)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _request(url: str, method: str = "GET") -> urllib.request.Request:
    """The request for ``url`` (the whole file, as it is stored)."""
    if urlparse(url).scheme not in ("http", "https"):
        raise ValueError("not an http or https URL")
    return urllib.request.Request(url, method=method, headers={"User-Agent": "gcnet", "Accept-Encoding": "identity"})


def _open(request: urllib.request.Request, timeouts: Tuple[float, float]):
    opener = urllib.request.build_opener(_HTTPHandler(timeouts[1]), _HTTPSHandler(timeouts[1]), _RedirectHandler())
    return opener.open(request, timeout=timeouts[0])


class _Incomplete(Exception):
    """The server closed the connection before sending what it announced."""


class _WriteFailed(Exception):
    """Writing the downloaded bytes failed (a full disk): not the network's fault."""


def _reason(error: BaseException, received: int, timeouts: Tuple[float, float]) -> str:
    """What went wrong, in words: the HTTP status, the network error, the stall or the early
    end."""
    if isinstance(error, urllib.error.HTTPError):
        if 300 <= error.code < 400 and str(error.reason).startswith(_RedirectHandler.inf_msg):
            return f"it redirects in a loop or more than {_RedirectHandler.max_redirections} times"
        return f"HTTP {error.code} {str(error.reason).splitlines()[0]}"
    if isinstance(error, urllib.error.URLError):
        if isinstance(error.reason, TimeoutError):
            return f"no connection within {timeouts[0]:g} s ({TIMEOUT_HINT})"
        return str(error.reason)
    if isinstance(error, TimeoutError):
        when = "sent nothing" if not received else f"stalled after {received} bytes and sent nothing more"
        return f"the server {when} for {timeouts[1]:g} s ({TIMEOUT_HINT})"
    if isinstance(error, _Incomplete):
        return str(error)
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(error, http.client.HTTPException):
        return f"the server broke off the transfer after {received} bytes ({type(error).__name__})"
    return str(error) or type(error).__name__


def _content_length(response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


class _Transfer:
    """Copies a response to a file, counting the bytes and hashing them."""

    def __init__(self, response, name: str, progress: bool):
        self.response, self.name, self.progress = response, name, progress
        self.received, self.sha256 = 0, ""

    def copy_to(self, f) -> None:
        total, digest = _content_length(self.response), hashlib.sha256()
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.name, disable=not self.progress)
        with bar:
            for chunk in iter(lambda: self.response.read1(CHUNK_SIZE), b""):  # what has arrived, up to a chunk
                try:
                    f.write(chunk)
                except OSError as e:
                    raise _WriteFailed(e) from e
                digest.update(chunk)
                self.received += len(chunk)
                bar.update(len(chunk))
        if total is not None and self.received != total:
            raise _Incomplete(f"the connection closed after {self.received} of the {total} bytes the server announced")
        self.sha256 = digest.hexdigest()


def download_file(
    url: str, path: str, sha256: str = "", *, way_out: str = "", progress: Optional[bool] = None, timeouts=None
) -> Download:
    """Download ``url`` to ``path``.

    The file arrives under a temporary name and is renamed to ``path`` only once complete and,
    when ``sha256`` is given (a full digest or a prefix of one), once its digest matches;
    ``path`` is never left half-written.

    Args:
        way_out: what the user can do instead (e.g. "pass a local file with ..."), put at the
            end of a :class:`DownloadError`'s message.
        progress: show a progress bar (default: when stderr is a terminal).
        timeouts: (connect, read) seconds (default: :func:`download_timeouts`).

    Raises:
        DownloadError: the download could not be made; the message names ``url``, the reason
            and ``way_out``.
        ValueError: the downloaded file does not have the expected sha256 (nothing is kept).
    """
    sha256 = check_sha256(sha256, url)
    timeouts = timeouts or download_timeouts()
    try:
        request = _request(url)
    except ValueError as e:  # not a URL urllib can request
        raise DownloadError(url, str(e), way_out) from None
    progress = sys.stderr.isatty() if progress is None else progress
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    transfer = None
    try:
        with _open(request, timeouts) as response, atomic_path(path) as tmp, open(tmp, "wb") as f:
            transfer = _Transfer(response, os.path.basename(path), progress)
            transfer.copy_to(f)
            digest = transfer.sha256
            if sha256 and not digest.startswith(sha256):
                raise ValueError(
                    f"Downloaded {url} has sha256 {digest}, expected {sha256}...; the file was deleted. "
                    "Retry, or report a changed upstream file."
                )
            final_url = response.geturl()
    except _WriteFailed as e:
        error = e.args[0]
        raise OSError(error.errno, f"{error.strerror} while downloading {url}", path) from None
    except (OSError, http.client.HTTPException, _Incomplete) as e:
        raise DownloadError(url, _reason(e, transfer.received if transfer else 0, timeouts), way_out) from None
    logger.debug(f"Downloaded {url} to {path} (sha256 {digest[:12]}...)")
    return Download(path=path, url=url, final_url=final_url, sha256=digest)


def unreachable(url: str, timeouts=None) -> str:
    """Why the server of ``url`` cannot be reached ("" if it answers at all, with any HTTP
    status): a quick check before handing a download to a library that retries for long."""
    timeouts = timeouts or download_timeouts()
    try:
        with _open(_request(url, method="HEAD"), timeouts):
            return ""
    except urllib.error.HTTPError:
        return ""
    except (OSError, ValueError, http.client.HTTPException) as e:
        return _reason(e, 0, timeouts)
