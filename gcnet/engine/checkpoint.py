"""Checkpoints that are complete or absent, whenever the process is killed."""
import glob
import os
from typing import Any, Callable, IO

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_write"]

_PARTIAL_SUFFIX = ".partial"


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a temporary file that is flushed to disk and renamed over it, so
    that ``path`` always holds either its old content or the complete new one."""
    tmp = f"{path}{_PARTIAL_SUFFIX}"
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


class AtomicCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` with atomic saves on a local ``save_dir``.

    A checkpoint and the ``last_checkpoint`` tag are each written with :func:`atomic_write`,
    the tag after the checkpoint: a run killed at any moment, even while saving, resumes from
    the last complete checkpoint. ``resume_or_load`` removes files a killed save left behind,
    and says so when ``resume`` finds no checkpoint.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write(
            os.path.join(self.save_dir, "last_checkpoint"),
            lambda f: f.write(last_filename_basename.encode()),
        )

    def resume_or_load(self, path: str, *, resume: bool = True):
        if self.save_dir and self.save_to_disk:
            for partial in glob.glob(os.path.join(self.save_dir, f"*{_PARTIAL_SUFFIX}")):
                self.logger.info(f"Removing {partial}, left by an interrupted save")
                os.remove(partial)
        if resume and not self.has_checkpoint():
            self.logger.info(
                f"Resume: no checkpoint in {self.save_dir}; starting from "
                f"{path or 'randomly initialised weights'}"
            )
        return super().resume_or_load(path, resume=resume)
