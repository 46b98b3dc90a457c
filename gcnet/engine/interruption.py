"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop, ``kill``) as an exception a run can end on
with a sentence, instead of a traceback (SIGINT) or no word at all (SIGTERM).

Within :func:`stop_on_signals`, either signal raises :class:`Interrupted` where the main thread
is; the hooks of :mod:`gcnet.engine.hooks` ask :func:`interrupted` and start no evaluation or
checkpoint after it. :class:`Interrupted` is a ``KeyboardInterrupt``, so that detectron2's
training loop does not log it as a failure and PyTorch's data loader workers, which inherit
the handler when they fork, end quietly.
"""
import contextlib
import os
import signal
from typing import Iterator, Optional

__all__ = ["Interrupted", "interrupted", "stop_on_signals", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: Optional[int] = None


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


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in this process (a
    process forked from it raises a plain ``KeyboardInterrupt``); the handlers before it are
    restored after it."""
    owner = os.getpid()

    def handler(signum, frame):
        global _received
        if os.getpid() != owner:
            raise KeyboardInterrupt
        _received = signum
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
