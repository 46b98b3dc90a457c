"""How a tool ends on what it cannot go on after: one line that names the file, key or value
and the way out, a non-zero exit, and no traceback.

:func:`exit_on_bad_input` covers the input (a config, an option, a dataset, a checkpoint, a
download); :func:`exit_on_stop` a run that has started (a full disk, an image that cannot be
decoded, a loss guard that gives up, SIGINT or SIGTERM), saying what was interrupted, the last
complete checkpoint and the command that resumes from it.
"""

import contextlib
import errno
import logging
import os
import shlex
import sys
from typing import Callable, Iterator

from detectron2.utils import comm

from gcnet.data import UnreadableImageError
from gcnet.utils.download import DownloadError

from .checkpoint import read_last_checkpoint
from .interruption import Interrupted, check_interrupted, interrupted, stop_on_signals
from .launch import RendezvousError, WorkerFailed

__all__ = ["exit_on_bad_input", "exit_on_stop", "checkpoint_state", "resume_command", "DISK_FULL"]

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def exit_on_bad_input(tool: str) -> Iterator[None]:
    """Report a bad config file, option, dataset or checkpoint, a download that cannot be made,
    machines that do not meet or a worker that died, in one line prefixed with ``tool``."""
    try:
        yield
    except (FileNotFoundError, ValueError, DownloadError, RendezvousError) as e:
        sys.exit(f"{tool}: {e}")
    except WorkerFailed as e:
        if not e.said:
            print(f"{tool}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except AssertionError as e:  # detectron2's loader asserts on a dataset left empty
        if "is empty" not in str(e) and "No valid data" not in str(e):
            raise
        sys.exit(
            f"{tool}: {e} Every image was filtered out: images without usable annotations are dropped "
            "(dataloader.train.dataset.filter_empty=False keeps them), or the dataset lists none"
        )


def _reported_fault(error: BaseException) -> bool:
    """Whether ``error`` is a fault a running training ends on with one line."""
    disk_full = isinstance(error, OSError) and error.errno in DISK_FULL
    return disk_full or isinstance(error, (UnreadableImageError, FloatingPointError))


class _DropReportedFaults(logging.Filter):
    """Drops detectron2's "Exception during training" traceback of a fault reported in a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _reported_fault(record.exc_info[1]))


logging.getLogger("detectron2.engine.train_loop").addFilter(_DropReportedFaults())


def resume_command() -> str:
    """The command line of this process with ``--resume`` (added if it is not there)."""
    argv = list(sys.argv) if "--resume" in sys.argv else [*sys.argv[:1], "--resume", *sys.argv[1:]]
    return shlex.join(["python", *argv])


def checkpoint_state(output_dir: str) -> Callable[[], str]:
    """What a training run keeps, for :func:`exit_on_stop`: its last complete checkpoint in
    ``output_dir`` and the command that resumes from it."""

    def state() -> str:
        last = read_last_checkpoint(output_dir)
        if not last:
            return "no checkpoint was written yet"
        return f"the last complete checkpoint is {os.path.join(output_dir, last)}; continue with: {resume_command()}"

    return state


def _what_failed(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"writing {error.filename or 'a file'} failed ({error.strerror}): make room"
    lines = str(error).strip().splitlines()  # a data loader worker's error comes with its traceback, the message last
    return lines[-1].split("Error: ", 1)[-1] if len(lines) > 1 else lines[0]


def _nothing_kept() -> str:
    return "nothing was written; run the command again"


@contextlib.contextmanager
def exit_on_stop(
    tool: str, what: str, where: Callable[[], str] = str, state: Callable[[], str] = _nothing_kept
) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the run (:func:`stop_on_signals`); a stop, or
    a fault it cannot go on after (:func:`_reported_fault`), ends the process with one line
    from the main process: ``what`` ("training", "evaluation") was interrupted ``where()``
    (e.g. "at iteration 57"), then ``state()``: what the run keeps and how to go on
    (:func:`checkpoint_state`). The exit code of a stop is the shell's (130 for SIGINT, 143 for
    SIGTERM)."""
    try:
        with stop_on_signals():
            try:
                yield
            except Exception as e:  # raised by a child process that ended with the stop
                if interrupted() is None:
                    raise
                raise Interrupted(interrupted()) from e
            check_interrupted()  # a stop whose exception Python swallowed
    except Interrupted as e:
        place = f" {where()}" if where() else ""
        if comm.is_main_process():  # the others stopped at the same point
            print(f"{tool}: {what} interrupted by {e.signal_name}{place}; {state()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        if not _reported_fault(e):
            raise
        sys.exit(f"{tool}: {_what_failed(e)}; {state()}")
