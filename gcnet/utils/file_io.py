"""Files that are complete or absent."""
import contextlib
import os
from typing import IO, Any, Callable, ContextManager, Iterator

__all__ = ["atomic_write", "atomic_path", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a temporary file, ``<path>.partial``, that is flushed to disk and
    renamed over it, so that ``path`` always holds either its old content or the complete new one."""
    with _renamed_over(f"{path}{PARTIAL_SUFFIX}", path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


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
