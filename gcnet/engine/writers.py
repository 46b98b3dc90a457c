"""What a training run writes about itself: a progress line a person can follow on the
console, and a ``metrics.json`` that a resume continues instead of repeating."""

import datetime
import json
import logging
import os
import time
from typing import Optional

from detectron2.utils.events import EventWriter, get_event_storage

from gcnet.utils.file_io import atomic_open

__all__ = ["ProgressPrinter", "progress_period", "trim_metrics"]

# A progress line fits this many columns, the timestamp and logger name included.
LINE_WIDTH = 120
# Progress is printed at least this often, in seconds, however slow the iterations.
MAX_SILENCE = 30.0


def progress_period(max_iter: int, log_period: int) -> int:
    """Iterations between progress lines: ``log_period``, or fewer for a short run, so that
    one prints about 20 lines at least."""
    return max(1, min(log_period, max_iter // 20))


class ProgressPrinter(EventWriter):
    """One progress line every ``period`` iterations, at least every :data:`MAX_SILENCE`
    seconds, and at the last iteration, within :data:`LINE_WIDTH` columns::

        iter 40/200  loss 1.52 (cls 0.31 box_reg 0.27 mask 0.66 rpn_cls 0.2 rpn_loc 0.1)  lr 0.01  2.3 s/it  eta 0:06:08

    The total loss and the losses are medians over the last ``window`` iterations. Every loss
    is shown: those that do not fit the line follow on the next lines of the message, after "+". Call
    :meth:`write` every iteration.
    """

    def __init__(self, max_iter: int, period: int, window: int = 20):
        self.logger = logging.getLogger("gcnet")
        self.max_iter = max_iter
        self.period = period
        self.window = window
        self.width = LINE_WIDTH - len("[12/02 07:49:22 gcnet]: ")  # setup_logger's prefix
        self.last_print = (-1, time.monotonic())  # (iteration, time)

    def write(self):
        storage = get_event_storage()
        iteration = storage.iter
        if iteration >= self.max_iter or iteration == self.last_print[0]:
            return
        due = (iteration + 1) % self.period == 0 or iteration == self.max_iter - 1
        if not due and time.monotonic() - self.last_print[1] < MAX_SILENCE:
            return
        self.last_print = (iteration, time.monotonic())
        self.logger.info(self.progress(storage))

    def median(self, storage, name: str) -> float:
        return storage.history(name).median(storage.count_samples(name, self.window))

    def eta(self, storage) -> str:
        """The time left, from the median time of the last 1000 iterations (also stored as
        ``eta_seconds``, which metrics.json keeps), or "" before the first is timed."""
        if "time" not in storage.histories():
            return ""
        seconds = storage.history("time").median(1000) * (self.max_iter - storage.iter - 1)
        storage.put_scalar("eta_seconds", seconds, smoothing_hint=False)
        return str(datetime.timedelta(seconds=int(seconds)))

    def progress(self, storage) -> str:
        histories = storage.histories()
        head = f"iter {storage.iter + 1}/{self.max_iter}"
        if "total_loss" in histories:
            head += f"  loss {self.median(storage, 'total_loss'):.3g}"
        tail = ""
        if "lr" in histories:
            tail += f"  lr {histories['lr'].latest():.3g}"
        if "time" in histories:
            tail += f"  {histories['time'].global_avg():.3g} s/it"
        eta = self.eta(storage)
        if eta:
            tail += f"  eta {eta}"
        losses = [
            f"{name[len('loss_') :]} {self.median(storage, name):.2g}" for name in histories if name.startswith("loss_")
        ]
        shown = len(losses)
        while shown and len(f"{head} ({' '.join(losses[:shown])}){tail}") > self.width:
            shown -= 1
        first = f"{head} ({' '.join(losses[:shown])}){tail}" if shown else head + tail
        lines = [first]
        for loss in losses[shown:]:
            if lines[-1] is first or len(f"{lines[-1]} {loss}") > self.width:
                lines.append(f"  + {loss}")
            else:
                lines[-1] += f" {loss}"
        return "\n".join(lines)


def trim_metrics(output_dir: str, last_iteration: int) -> int:
    """Remove from ``output_dir``/metrics.json the entries past ``last_iteration``, written by
    a run after the checkpoint it is resumed from, so that the resumed run does not repeat
    them. The file is rewritten atomically. Returns the number of entries removed."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        lines = f.read().splitlines()
    kept = [line for line in lines if _iteration(line) is not None and _iteration(line) <= last_iteration]
    if len(kept) < len(lines):
        with atomic_open(path, "w") as f:
            f.write("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _iteration(line: str) -> Optional[int]:
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a kill
