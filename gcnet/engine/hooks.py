"""detectron2's checkpoint and evaluation hooks for runs that are interrupted and resumed: one
copy of the final weights (``model_best`` of the final evaluation is a hard link to
``model_final``), ``max_to_keep`` held for the output folder whoever wrote its checkpoints, the
best score carried across resumes, no checkpoint of weights that made the loss guard refuse
steps, and no evaluation after an interruption."""

import logging
import operator
import os
import re
from typing import List, Optional

from detectron2.engine import hooks

from .checkpoint import GCNetCheckpointer
from .interruption import check_interrupted

__all__ = ["PeriodicCheckpointer", "GuardedPeriodicCheckpointer", "BestCheckpointer", "EvalHook"]

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's ``PeriodicCheckpointer``, except that

    * the last iteration writes ``<prefix>_final`` only (not also ``<prefix>_<iter>`` of the
      same weights);
    * ``max_to_keep`` holds for the output folder: after each save, the periodic checkpoints
      of the folder (``<prefix>_<7 digits>.pth``, whichever run wrote them) beyond the newest
      ``max_to_keep`` are removed, where ``<prefix>_final`` counts as the newest once written.
      The final and the best checkpoints are never removed.
    """

    def step(self, iteration: int, **kwargs) -> None:
        iteration = int(iteration)
        final = self.max_iter is not None and iteration >= self.max_iter - 1
        if final:
            self.checkpointer.save(f"{self.file_prefix}_final", iteration=iteration, **kwargs)
        elif (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", iteration=iteration, **kwargs)
        else:
            return
        if self.max_to_keep is not None:
            self.remove_old_checkpoints(self.max_to_keep - 1 if final else self.max_to_keep)

    def periodic_checkpoints(self) -> List[str]:
        """The periodic checkpoints of the output folder, oldest first (by iteration)."""
        folder = self.checkpointer.save_dir
        pattern = re.compile(rf"^{re.escape(self.file_prefix)}_(\d{{7}})\.pth$")
        found = [(int(m.group(1)), name) for name in self.path_manager.ls(folder) if (m := pattern.match(name))]
        return [os.path.join(folder, name) for _, name in sorted(found)]

    def remove_old_checkpoints(self, keep: int) -> None:
        periodic = self.periodic_checkpoints()
        for path in periodic[: max(len(periodic) - keep, 0)]:
            logger.info(f"Removing {path} (train.checkpointer.max_to_keep={self.max_to_keep})")
            self.path_manager.rm(path)


class GuardedPeriodicCheckpointer(PeriodicCheckpointer):
    """The :class:`PeriodicCheckpointer` above, which writes nothing while the trainer's loss
    guard refuses steps: a checkpoint then would hold the weights that made them fail, and
    reloading it would not recover."""

    def after_step(self):
        if getattr(self.trainer, "steps_failing", False):
            iteration = self.trainer.iter
            if (iteration + 1) % self.period == 0 or iteration >= self.max_iter - 1:
                logger.warning(f"Iteration {iteration}: no checkpoint written while steps are failing")
            return
        super().after_step()


class EvalHook(hooks.EvalHook):
    """detectron2's ``EvalHook``, which does not start the final evaluation of a training that
    was interrupted (SIGINT, SIGTERM: :mod:`gcnet.engine.interruption`)."""

    def after_train(self):
        check_interrupted()
        super().after_train()


class BestCheckpointer(hooks.HookBase):
    """Keeps ``<file_prefix>.pth`` for the best value of ``val_metric`` at each evaluation
    (detectron2's ``BestCheckpointer``), with

    * a hard link to the checkpoint of the same weights instead of a second copy, when one was
      just written or resumed from (:meth:`GCNetCheckpointer.save_or_link`), and
      ``last_checkpoint`` left naming where a resume continues;
    * the best value in the trainer's checkpoints (its :meth:`state_dict`), so that a resumed
      run compares with the best of the whole run, not of its own evaluations;
    * nothing done after an interruption.

    Args:
        eval_period: the evaluation period of the run's ``EvalHook``.
        val_metric: the storage key of the metric, e.g. "segm/AP".
        mode: "max" or "min": which values are better.
    """

    def __init__(
        self,
        eval_period: int,
        checkpointer: GCNetCheckpointer,
        val_metric: str,
        mode: str = "max",
        file_prefix: str = "model_best",
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"train.best_checkpoint.mode must be 'max' or 'min', got {mode!r}")
        self.eval_period = eval_period
        self.checkpointer = checkpointer
        self.val_metric = val_metric
        self.better = operator.gt if mode == "max" else operator.lt
        self.file_prefix = file_prefix
        self.best_metric: Optional[float] = None
        self.best_iter: Optional[int] = None

    def check(self) -> None:
        """Save (or link) the best checkpoint if the latest value of the metric is the best."""
        latest = self.trainer.storage.latest().get(self.val_metric)
        if latest is None:
            logger.warning(f"No {self.val_metric} among the evaluation results: {self.file_prefix} is not saved")
            return
        value, iteration = latest
        if self.best_metric is not None and not self.better(value, self.best_metric):
            logger.info(
                f"Not saving {self.file_prefix}: {self.val_metric} {value:.5f} is not better than the best "
                f"{self.best_metric:.5f} at iteration {self.best_iter}"
            )
            return
        weights_iteration = min(self.trainer.iter, self.trainer.max_iter - 1)
        self.checkpointer.save_or_link(self.file_prefix, weights_iteration, iteration=weights_iteration)
        logger.info(f"Saved {self.file_prefix}: {self.val_metric} {value:.5f} at iteration {iteration}")
        self.best_metric, self.best_iter = float(value), int(iteration)

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self.eval_period > 0 and next_iter % self.eval_period == 0 and next_iter != self.trainer.max_iter:
            self.check()

    def after_train(self):
        check_interrupted()
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self.check()

    def state_dict(self) -> dict:
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_metric, self.best_iter = state_dict["best_metric"], state_dict["best_iter"]
