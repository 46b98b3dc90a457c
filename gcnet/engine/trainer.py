"""The training loop: detectron2's ``AMPTrainer`` (its precision, gradient scaler and their
state), whose step can also run in fp32, clip the gradient norm, and guard against
non-finite or spiking losses.

Users of the original GCNet code report SyncBN training whose loss (and then mAP) collapses
late in training. :class:`LossGuard` catches such a step before it reaches the weights.
"""

import collections
import logging
import os
import statistics
import time
from typing import Dict, List, Optional

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from .interruption import check_interrupted

__all__ = ["LossGuard", "GCNetTrainer"]

logger = logging.getLogger(__name__)


class LossGuard:
    """Decides whether a step's total loss may update the model.

    A loss is bad when it is not finite, or when it exceeds ``spike_factor`` times the median
    of the last ``window`` good losses (checked once ``window`` good losses have been seen).

    Args:
        action: what the trainer does with a bad step: "skip" it, or "reload" the model and
            optimizer from the last checkpoint (the iteration counter and the learning-rate
            schedule go on).
        spike_factor: None disables spike detection.
        window: number of recent good losses the spike test compares with.
        max_consecutive: this many bad steps in a row stop training with a FloatingPointError.
    """

    ACTIONS = ("skip", "reload")

    def __init__(
        self,
        action: str = "skip",
        spike_factor: Optional[float] = 10.0,
        window: int = 20,
        max_consecutive: int = 10,
    ):
        if action not in self.ACTIONS:
            raise ValueError(f"loss_guard.action must be one of {self.ACTIONS}, got {action!r}")
        if spike_factor is not None and spike_factor <= 1:
            raise ValueError(f"loss_guard.spike_factor must be > 1 or None, got {spike_factor!r}")
        self.action = action
        self.spike_factor = spike_factor
        self.max_consecutive = max_consecutive
        self.history = collections.deque(maxlen=window)
        self.consecutive = 0
        self.total = 0

    def check(self, loss: float) -> Optional[str]:
        """None if ``loss`` is good (and then remembered), else why it is bad."""
        problem = None
        if not torch.isfinite(torch.tensor(loss)):
            problem = f"loss is {loss}"
        elif (
            self.spike_factor is not None
            and len(self.history) == self.history.maxlen
            and loss > self.spike_factor * statistics.median(self.history)
        ):
            problem = (
                f"loss {loss:.4g} spiked above {self.spike_factor:g} x the median "
                f"{statistics.median(self.history):.4g} of the last {len(self.history)} steps"
            )
        if problem is None:
            self.history.append(loss)
            self.consecutive = 0
        else:
            self.consecutive += 1
            self.total += 1
        return problem


class GCNetTrainer(AMPTrainer):
    """detectron2's ``AMPTrainer``, whose step can run in fp32 (as ``SimpleTrainer``'s), clip
    the gradient norm, and consult a :class:`LossGuard` before it updates the model.

    Args:
        amp_dtype: None for fp32; torch.float16 (with ``AMPTrainer``'s gradient scaler) or
            torch.bfloat16 to run the forward pass under CUDA autocast.
        clip_grad_norm: clip the total gradient norm to this value (the original GCNet
            configs use 35); None to disable.
        loss_guard: None to let detectron2 stop on a non-finite loss.
        checkpointer: where "reload" finds the last checkpoint; set it after creating the
            checkpointer of this trainer.

    All workers take the same decision about a step: the guard sees the loss averaged over
    them, so that a step is skipped everywhere or nowhere.
    """

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        *,
        amp_dtype: Optional[torch.dtype] = None,
        clip_grad_norm: Optional[float] = None,
        loss_guard: Optional[LossGuard] = None,
        checkpointer=None,
    ):
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        super().__init__(model, data_loader, optimizer, grad_scaler=scaler, precision=amp_dtype or torch.float32)
        self.autocast = amp_dtype is not None
        self.clip_grad_norm = clip_grad_norm
        self.loss_guard = loss_guard
        self.checkpointer = checkpointer
        self._streak = {"before": [], "reloaded": []}  # the checkpoints of the current run of failing steps
        self._data_iter = None

    @property
    def data_iter(self):
        """The iterator over ``data_loader``, made when the first step needs it."""
        if self._data_iter is None:
            self._data_iter = iter(self.data_loader)
        return self._data_iter

    def run_step(self):
        assert self.model.training, "[GCNetTrainer] model was changed to eval mode!"
        check_interrupted()
        start = time.perf_counter()
        data = next(self.data_iter)
        data_time = time.perf_counter() - start
        loss_dict, problem = self._forward(data)
        if problem is not None:
            self._recover(problem, loss_dict)
            return
        self.optimizer.zero_grad()
        self.grad_scaler.scale(sum(loss_dict.values())).backward()
        self.after_backward()
        if self.clip_grad_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
            get_event_storage().put_scalar("grad_norm", norm.item(), smoothing_hint=False)
        if (self.iter + 1) % self.gather_metric_period == 0:
            self.write_metrics(loss_dict, data_time, self.iter)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _forward(self, data):
        """The loss dict of ``data`` (None if the forward raised), and why the step must not
        update the model (None if it may)."""
        try:
            with torch.autocast("cuda", dtype=self.precision, enabled=self.autocast):
                loss_dict = self.model(data)
        except FloatingPointError as e:  # detectron2 raises on non-finite RPN proposals
            if self.loss_guard is None:
                raise
            loss_dict, forward_error = None, f" (forward raised: {e})"
        else:
            loss_dict = {"total_loss": loss_dict} if isinstance(loss_dict, torch.Tensor) else loss_dict
            forward_error = ""
        if self.loss_guard is None:
            return loss_dict, None
        local = float("nan") if loss_dict is None else sum(loss_dict.values()).detach().float().item()
        problem = self.loss_guard.check(self._mean_over_workers(local))
        return loss_dict, None if problem is None else problem + forward_error

    @staticmethod
    def _mean_over_workers(value: float) -> float:
        """The mean of ``value`` over all workers, so that they all take the same decision."""
        values = comm.all_gather(value) if comm.get_world_size() > 1 else [value]
        return sum(values) / len(values)

    def position(self) -> str:
        """Where the training is, in words: "at iteration 57", or "in the final evaluation"
        once the last iteration is done."""
        if self.iter >= getattr(self, "max_iter", self.iter + 1):
            return "in the final evaluation"
        return f"at iteration {self.iter}"

    @property
    def steps_failing(self) -> bool:
        """Whether the loss guard refused the last step (and no good step came since)."""
        return self.loss_guard is not None and self.loss_guard.consecutive > 0

    def _log_bad_loss(self, loss_dict: Optional[Dict[str, torch.Tensor]]) -> None:
        """Log the losses of a refused step as they were (not those of the last good step)."""
        storage = get_event_storage()
        losses = {k: v.detach().float().item() for k, v in (loss_dict or {}).items()}
        storage.put_scalars(total_loss=sum(losses.values()) if losses else float("nan"), **losses)
        storage.put_scalar("loss_guard/bad_steps", self.loss_guard.total, smoothing_hint=False)

    def _recover(self, problem: str, loss_dict=None) -> None:
        guard = self.loss_guard
        self._log_bad_loss(loss_dict)
        if guard.consecutive == 1:  # a streak of failing steps begins: what was written before it
            self._streak = {"before": self._checkpoints(), "reloaded": []}
        if guard.consecutive >= guard.max_consecutive:
            raise FloatingPointError(
                f"Iteration {self.iter}: {problem}; {guard.consecutive} bad steps in a row, stopping. {self._advice()}"
            )
        self.optimizer.zero_grad()
        if guard.action == "reload":
            path = self._checkpoint_before_streak()
            if path is not None:
                logger.warning(f"Iteration {self.iter}: {problem}; reloading model and optimizer from {path}")
                self._reload(path)
                return
            problem += "; no checkpoint written before the failures began to reload"
        logger.warning(f"Iteration {self.iter}: {problem}; skipping the step")

    def _checkpoints(self) -> List[str]:
        if self.checkpointer is None or not self.checkpointer.save_dir:
            return []
        return self.checkpointer.checkpoints_newest_first()

    def _checkpoint_before_streak(self) -> Optional[str]:
        """The newest checkpoint written before the failing steps began that this streak has
        not reloaded yet: when reloading one does not end the failures (it already held the
        weights that caused them), the next reload goes one checkpoint further back."""
        for path in self._streak["before"]:
            if path not in self._streak["reloaded"] and os.path.isfile(path):
                self._streak["reloaded"].append(path)
                return path
        return None

    def _reload(self, path: str) -> None:
        state = self.checkpointer.load(path, checkpointables=[])["trainer"]
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])

    def _advice(self) -> str:
        """The last good checkpoint, and what to try."""
        good = [p for p in self._streak["before"] if os.path.isfile(p)]
        where = (
            f"The last checkpoint written before the failures is {good[0]}"
            if good
            else "No checkpoint was written before the failures"
        )
        return (
            f"{where}. Try a lower learning rate (optimizer.lr), gradient clipping (train.clip_grad.enabled=True), "
            "or a longer warm-up"
        )

    def load_state_dict(self, state_dict):
        if state_dict.get("grad_scaler"):  # saved by a float16 run
            super().load_state_dict(state_dict)
        else:
            SimpleTrainer.load_state_dict(self, state_dict)
