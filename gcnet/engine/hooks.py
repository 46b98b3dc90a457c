"""detectron2's checkpoint hooks, without second copies of the same weights (the last
iteration is saved once, as ``model_final``, and ``model_best`` of the final iteration is a
hard link to it), and without checkpoints of weights that made the loss guard refuse steps."""
import logging

from detectron2.engine import hooks

from .checkpoint import GCNetCheckpointer

__all__ = ["PeriodicCheckpointer", "GuardedPeriodicCheckpointer", "BestCheckpointer"]

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's ``PeriodicCheckpointer``, except that the last iteration writes
    ``model_final`` only (not also ``model_<iter>`` of the same weights), and that
    ``max_to_keep`` counts ``model_final`` as the newest checkpoint: the periodic files beyond
    ``max_to_keep - 1`` are removed when it is written."""

    def step(self, iteration: int, **kwargs) -> None:
        if self.max_iter is None or iteration < self.max_iter - 1:
            return super().step(iteration, **kwargs)
        self.checkpointer.save(f"{self.file_prefix}_final", iteration=int(iteration), **kwargs)
        if self.max_to_keep is not None:
            while len(self.recent_checkpoints) > max(self.max_to_keep - 1, 0):
                superseded = self.recent_checkpoints.pop(0)
                if self.path_manager.exists(superseded):
                    self.path_manager.rm(superseded)


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


class _LinkingSaver:
    """The checkpointer as ``BestCheckpointer`` sees it: its saves go to ``save_or_link``, with
    the iteration whose weights the model holds (the trainer's, or the last one once the
    training loop has ended and counted one past it)."""

    def __init__(self, checkpointer: GCNetCheckpointer, hook: hooks.HookBase):
        self.checkpointer = checkpointer
        self.hook = hook

    def save(self, name: str, **kwargs) -> None:
        trainer = self.hook.trainer
        self.checkpointer.save_or_link(name, min(trainer.iter, trainer.max_iter - 1), **kwargs)


class BestCheckpointer(hooks.BestCheckpointer):
    """detectron2's ``BestCheckpointer``, whose ``model_best`` is a hard link to the checkpoint
    of the same weights when one was just written (:meth:`GCNetCheckpointer.save_or_link`)."""

    def __init__(self, eval_period: int, checkpointer: GCNetCheckpointer, val_metric: str, **kwargs):
        super().__init__(eval_period, checkpointer, val_metric, **kwargs)
        self._checkpointer = _LinkingSaver(checkpointer, self)
