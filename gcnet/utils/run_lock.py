"""One run per output folder: an advisory lock that lives as long as the process holding it."""
import datetime
import fcntl
import os
import shlex
import socket
import sys
from typing import IO, Dict

__all__ = ["FolderInUseError", "lock_folder", "LOCK_NAME"]

LOCK_NAME = ".run.lock"
_held: Dict[str, IO] = {}  # folder -> its open lock file (closing it releases the lock)


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock; the message names it."""


def lock_folder(folder: str) -> None:
    """Take the lock of ``folder`` for this process, or raise :class:`FolderInUseError`.

    The lock is ``flock`` on ``<folder>/.run.lock``, which the kernel releases when the
    process ends, however it ends (SIGKILL included): no stale lock is ever left. The file
    says who holds it (pid, host, start time, command), for the message of the next run.
    """
    folder = os.path.abspath(folder)
    if folder in _held:
        return
    f = open(os.path.join(folder, LOCK_NAME), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that has not yet said who it is"
        f.close()
        raise FolderInUseError(f"{folder} is in use by another run ({holder}); wait for it to end, or choose another folder")
    started = datetime.datetime.now().isoformat(timespec="seconds")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {shlex.join(sys.argv)}\n")
    f.flush()
    _held[folder] = f
