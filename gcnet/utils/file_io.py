"""Files that are complete or absent."""

import contextlib
import os
from typing import IO, Any, Callable, ContextManager, Iterator

__all__ = ["atomic_open", "atomic_write", "atomic_path", "AtomicWritePathManager", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"


class _WriteErrorRecorder:
    """A file whose first failed write (a full disk, a file-size limit) is kept: writers such
    as torch's zip writer turn it into an error of their own that no longer says why."""

    def __init__(self, f: IO):
        self._f = f
        self.write_error = None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.write_error = self.write_error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open the local file ``path`` for writing through a temporary file, ``<path>.partial``,
    that is flushed to disk and renamed over ``path`` when the block succeeds and removed when
    it fails, so that ``path`` always holds either its old content or the complete new one. A
    write that fails is raised as an OSError naming ``path`` (``errno`` ENOSPC for a full disk),
    whatever the writer made of it."""
    with _renamed_over(f"{path}{PARTIAL_SUFFIX}", path) as tmp, open(tmp, mode) as raw:
        f = _WriteErrorRecorder(raw)
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        except Exception as e:
            error = f.write_error or (e if isinstance(e, OSError) else None)
            if error is None:
                raise
            raise OSError(error.errno, error.strerror, path) from e


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` with ``write(f)`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        write(f)


def atomic_path(path: str) -> ContextManager[str]:
    """For writers that take a file name: a temporary name to write ``path`` under,
    ``<stem>.partial<ext>`` (writers that go by the extension, such as OpenCV's video writer,
    still see it), renamed over ``path`` when the block succeeds and removed when it fails."""
    stem, ext = os.path.splitext(path)
    return _renamed_over(f"{stem}{PARTIAL_SUFFIX}{ext}", path)


@contextlib.contextmanager
def _renamed_over(tmp: str, path: str) -> Iterator[str]:
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class AtomicWritePathManager:
    """An iopath ``PathManager`` whose ``open`` writes local files with :func:`atomic_open`
    (creating their folder); reads, and paths of other handlers (``<scheme>://...``, where an
    object store publishes an upload once it is complete), go to the wrapped PathManager, as
    does every other method."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name: str) -> Any:
        return getattr(self._path_manager, name)

    def open(self, path: str, mode: str = "r", **kwargs: Any):
        if "://" in path or not any(c in mode for c in "wax"):
            return self._path_manager.open(path, mode, **kwargs)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return atomic_open(path, mode)
