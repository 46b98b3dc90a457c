"""Files that are complete or absent."""
import contextlib
import os
from typing import IO, Any, Callable, Iterator

__all__ = ["atomic_write", "atomic_path", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a temporary file that is flushed to disk and renamed over it, so
    that ``path`` always holds either its old content or the complete new one."""
    tmp = f"{path}{PARTIAL_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """For writers that take a file name: a temporary name to write ``path`` under,
    ``<stem>.partial<ext>`` (writers that go by the extension, such as OpenCV's video writer,
    still see it), renamed over ``path`` when the block succeeds and removed when it fails."""
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}{PARTIAL_SUFFIX}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
