"""Files that are complete or absent."""
import os
from typing import IO, Any, Callable

__all__ = ["atomic_write"]

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
