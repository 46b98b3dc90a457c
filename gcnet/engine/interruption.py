"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop, ``kill``) as an exception a run can end on
with a sentence, instead of a traceback (SIGINT) or no word at all (SIGTERM).

Within :func:`stop_on_signals`, either signal raises :class:`Interrupted` where the main thread
is, and again at the next check point (:func:`check_interrupted`) where Python swallowed it;
the hooks of :mod:`gcnet.engine.hooks` start no evaluation or checkpoint after it.
:class:`Interrupted` is a ``KeyboardInterrupt``, so that detectron2's training loop does not
log it as a failure and PyTorch's data loader workers, which inherit the handler when they
fork, end quietly.
"""

import contextlib
import os
import signal
import sys
from typing import Iterator, List, Optional

__all__ = ["Interrupted", "interrupted", "check_interrupted", "stoppable", "stop_on_signals", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: Optional[int] = None
# Every stop this process received, also after its block ended: the process then ends, and what
# it tears down half-made (a data loader's iterator) is no error to report.
_STOPS: List[int] = []
_depth = 0  # of nested stop_on_signals blocks


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``exit_code`` is the shell's for it (130 for SIGINT, 143 for
    SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum


def interrupted() -> Optional[int]:
    """The stop signal this process received within :func:`stop_on_signals`, or None."""
    return _received


def check_interrupted() -> None:
    """Raise :class:`Interrupted` if a stop signal arrived: the check points of a run (each
    training step, each evaluated batch, the hooks after training), where an exception raised by
    the signal handler itself was swallowed (Python ignores exceptions in ``os.fork``'s
    callbacks, in ``__del__`` and in weak reference callbacks, which a signal can land in)."""
    if _received is not None:
        raise Interrupted(_received)


class stoppable:
    """``iterable`` (a data loader) with :func:`check_interrupted` before each item; its
    length is the iterable's."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            check_interrupted()
            yield item


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in this process (a
    process forked from it raises a plain ``KeyboardInterrupt``); the handlers before it are
    restored after it, and a stop received in it is forgotten. After a stop, the end of a child
    process (a data loader worker) is no longer an error."""
    global _depth, _received
    owner = os.getpid()

    def handler(signum, frame):
        global _received
        if os.getpid() != owner:
            raise KeyboardInterrupt
        _received = signum
        _STOPS.append(signum)
        # The data loader workers stop too (a signal to the process group): their ends are
        # expected now, and PyTorch's SIGCHLD handler would raise them as errors.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        raise Interrupted(signum)

    def unraisable(info):
        # What Python prints instead of raising (an error in __del__, in a fork callback): after a
        # stop, the signal's own exception and objects torn down half-made, also once the block
        # has ended (a data loader's iterator ends with the process); before it, as usual.
        if not _STOPS:
            previous_hook(info)

    _depth += 1
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    previous[signal.SIGCHLD] = signal.getsignal(signal.SIGCHLD)
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        _depth -= 1
        if not _STOPS:  # after a stop the process ends, tearing down what it left half-made
            sys.unraisablehook = previous_hook
        for signum, old in previous.items():
            if old is not None:  # None: a handler not set from Python, left as it is
                signal.signal(signum, old)
        if _depth == 0:
            _received = None
