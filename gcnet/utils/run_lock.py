"""One run per output folder: an advisory lock that lives as long as the process holding it."""

import atexit
import datetime
import fcntl
import os
import shlex
import socket
import sys
from typing import IO, Dict

__all__ = ["FolderInUseError", "lock_folder", "release_folder", "LOCK_NAME"]

LOCK_NAME = ".run.lock"
_held: Dict[str, IO] = {}  # folder -> its open lock file (closing it releases the lock)


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock; the message names it."""


def _open_locked(path: str) -> IO:
    """``path`` opened and locked, retried when another process removed the file between our
    open and our lock (we would then hold the lock of a file nobody else can see)."""
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not yet said who it is"
            f.close()
            raise FolderInUseError(
                f"{os.path.dirname(path)} is in use by another run ({holder}); wait for it to end, or choose "
                "another folder"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


def lock_folder(folder: str) -> None:
    """Take the lock of ``folder`` for this process, or raise :class:`FolderInUseError`.

    The lock is ``flock`` on ``<folder>/.run.lock``, which the kernel releases when the
    process ends, however it ends (SIGKILL included): no stale lock is ever in force. The file
    says who holds it (pid, host, start time, command), for the message of the next run, and
    is removed when the process exits (:func:`release_folder`).
    """
    folder = os.path.abspath(folder)
    if folder in _held:
        return
    f = _open_locked(os.path.join(folder, LOCK_NAME))
    started = datetime.datetime.now().isoformat(timespec="seconds")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {shlex.join(sys.argv)}\n")
    f.flush()
    _held[folder] = f


def release_folder(folder: str) -> None:
    """Remove the lock file of ``folder`` and release the lock, if this process holds it."""
    f = _held.pop(os.path.abspath(folder), None)
    if f is None:
        return
    try:
        os.remove(f.name)
    except FileNotFoundError:
        pass
    f.close()


@atexit.register
def _release_all() -> None:
    for folder in list(_held):
        release_folder(folder)
