"""Checkpoints that are complete or absent whenever the process is killed, and loaded only
from sources that cannot run code."""
import os
from urllib.parse import urlparse

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import Detectron2Handler

from gcnet.utils.download import DownloadError
from gcnet.utils.file_io import PARTIAL_SUFFIX, AtomicWritePathManager, atomic_path
from gcnet.utils.safe_load import UnsafeCheckpointError, load_checkpoint_file

__all__ = ["GCNetCheckpointer", "TRUSTED_PICKLE_HOSTS"]

# detectron2's model zoo (detectron2:// and its ImageNet models) publishes pickled .pkl files.
TRUSTED_PICKLE_HOSTS = ("dl.fbaipublicfiles.com",)


def _is_trusted_pickle(path: str) -> bool:
    """A .pkl may run code when unpickled: load it only from a local path the user names or
    detectron2's model zoo."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file") or parsed.scheme == "detectron2":
        return True
    return parsed.netloc in TRUSTED_PICKLE_HOSTS


def _download_url(path: str) -> str:
    """The URL a remote checkpoint path is downloaded from (``detectron2://`` names a file of
    detectron2's model zoo)."""
    if path.startswith(Detectron2Handler.PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + path[len(Detectron2Handler.PREFIX) :]
    return path


class GCNetCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer``, with

    * atomic saves on a local ``save_dir``: fvcore's ``save`` writes through an
      :class:`~gcnet.utils.AtomicWritePathManager`, so that a checkpoint and the
      ``last_checkpoint`` tag are each written to a temporary file and renamed, the tag after
      the checkpoint, and a run killed at any moment (even while saving) resumes from the last
      complete checkpoint; ``resume_or_load`` removes what a killed save left, and says so when
      ``resume`` finds no checkpoint. Other ``PathManager`` paths are written as they are;
    * safe loads: ``.pth`` files through ``torch.load(weights_only=True)`` with the numpy and
      mmengine types of :data:`gcnet.utils.safe_load.SAFE_GLOBALS`, pickled ``.pkl`` files only
      from local paths or detectron2's model zoo, and a truncated or corrupt file reported by
      name;
    * a remote checkpoint that cannot be downloaded (no network) or a local one that does not
      exist reported in one sentence, with the way out;
    * BatchNorm step counters (``num_batches_tracked``) left out of the missing-keys report.
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = AtomicWritePathManager(self.path_manager)
        self._last_saved = (None, "")  # (iteration, file) of the last save, for save_or_link

    def resume_or_load(self, path: str, *, resume: bool = True):
        if self.save_dir and self.save_to_disk and self.path_manager.isdir(self.save_dir):
            for name in self.path_manager.ls(self.save_dir):
                if name.endswith(PARTIAL_SUFFIX):
                    partial = os.path.join(self.save_dir, name)
                    self.logger.info(f"Removing {partial}, left by an interrupted save")
                    self.path_manager.rm(partial)
        if resume and not self.has_checkpoint():
            self.logger.info(
                f"Resume: no checkpoint in {self.save_dir}; starting from "
                f"{path or 'randomly initialised weights'}"
            )
        return super().resume_or_load(path, resume=resume)

    def load(self, path: str, *args, **kwargs):
        if path and path.split("?")[0].endswith(".pkl") and not _is_trusted_pickle(path):
            raise ValueError(
                f"Refusing to unpickle {path}: .pkl files run code when loaded and are only read "
                f"from local paths or {', '.join(TRUSTED_PICKLE_HOSTS)}. "
                "Download it yourself and pass the local path if you trust it."
            )
        return super().load(self._local_file(path) if path else path, *args, **kwargs)

    def _local_file(self, path: str) -> str:
        """The local file of ``path``, downloaded first where it is remote.

        Raises:
            DownloadError: the download failed; the message names the URL, the reason, and
                how to go on (a local copy, or no initial weights).
            FileNotFoundError: a local ``path`` does not exist.
        """
        if "://" not in path or path.startswith("file://"):
            local = path[len("file://") :] if path.startswith("file://") else path
            if not os.path.isfile(local):
                raise FileNotFoundError(f"Checkpoint {path} not found")
            return local
        try:
            return self.path_manager.get_local_path(path)
        except DownloadError:
            raise
        except OSError as e:
            url = _download_url(path)
            reason = getattr(e, "reason", None) or e
            raise DownloadError(
                f"Could not download {url}: {reason}. Without network access, copy the file to "
                f"this machine and pass its path (train.init_checkpoint=/path/to/"
                f"{os.path.basename(url)}), or train from scratch with train.init_checkpoint=\"\""
            ) from e

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except (OSError, EOFError, RuntimeError, ValueError, KeyError) as e:
            if isinstance(e, (FileNotFoundError, UnsafeCheckpointError)):
                raise
            raise ValueError(f"Cannot load checkpoint {filename}: it is truncated or corrupt ({e})") from e

    def _torch_load(self, f):
        return load_checkpoint_file(f)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None:
            counters = [k for k in incompatible.missing_keys if k.endswith(".num_batches_tracked")]
            for key in counters:
                incompatible.missing_keys.remove(key)
        return incompatible

    def save(self, name: str, **kwargs) -> None:
        super().save(name, **kwargs)
        self._last_saved = (kwargs.get("iteration"), os.path.join(self.save_dir, f"{name}.pth"))

    def save_or_link(self, name: str, weights_iteration: int, **kwargs) -> None:
        """:meth:`save`, or, when the last file this checkpointer saved holds the weights of
        ``weights_iteration`` (``model_best`` when the best evaluation is the final one), a
        hard link to that file instead of a second copy. ``last_checkpoint`` keeps naming the
        file saved last."""
        iteration, saved = self._last_saved
        target = os.path.join(self.save_dir, f"{name}.pth")
        if iteration is not None and iteration == weights_iteration and os.path.isfile(saved):
            try:
                with atomic_path(target) as tmp:
                    os.link(saved, tmp)
                self.logger.info(f"Linked {target} to {saved} (the same iteration {iteration})")
                return
            except OSError as e:  # a file system without hard links
                self.logger.info(f"Cannot link {target} to {saved} ({e.strerror}); saving a copy")
        self.save(name, **kwargs)
