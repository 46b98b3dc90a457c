"""Checkpoints that are complete or absent whenever the process is killed, and loaded only
from sources that cannot run code."""
import os
from typing import List
from urllib.parse import urlparse

from detectron2.checkpoint import DetectionCheckpointer

from gcnet.utils.file_io import PARTIAL_SUFFIX, AtomicWritePathManager, atomic_path
from gcnet.utils.local_files import TRUSTED_PICKLE_HOSTS, local_checkpoint
from gcnet.utils.safe_load import UnsafeCheckpointError, load_checkpoint_file, load_pickle_file

__all__ = ["GCNetCheckpointer", "TRUSTED_PICKLE_HOSTS"]

class GCNetCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer``, with

    * atomic saves on a local ``save_dir``: fvcore's ``save`` writes through an
      :class:`~gcnet.utils.AtomicWritePathManager`, so that a checkpoint and the
      ``last_checkpoint`` tag are each written to a temporary file and renamed, the tag after
      the checkpoint, and a run killed at any moment (even while saving) resumes from the last
      complete checkpoint; ``resume_or_load`` removes what a killed save left, and says so when
      ``resume`` finds no checkpoint. Other ``PathManager`` paths are written as they are;
    * safe loads: ``.pth`` files through ``torch.load(weights_only=True)`` with the numpy and
      mmengine types of :data:`gcnet.utils.safe_load.SAFE_GLOBALS`; pickled ``.pkl`` files
      only from local paths the user names or detectron2's model zoo over https (decided on the
      resolved local file and its source, never on the string typed; never one that
      ``last_checkpoint`` names), and then with an unpickler that builds numpy arrays and
      containers only; a truncated or corrupt file reported by name;
    * a resume whose newest checkpoint is broken falls back to the newest intact one;
    * a remote checkpoint that cannot be downloaded (no network) or a local one that does not
      exist reported in one sentence, with the way out;
    * BatchNorm step counters (``num_batches_tracked``) left out of the missing-keys report.
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = AtomicWritePathManager(self.path_manager)
        self._pickle_refusal = "only files named through load() are unpickled"
        self._last_saved = (None, "")  # (iteration, file) of the last save, for save_or_link

    def resume_or_load(self, path: str, *, resume: bool = True):
        """As fvcore's, except that a broken newest checkpoint (a ``last_checkpoint`` that names
        a missing, empty, truncated or corrupt file) falls back to the newest intact checkpoint
        of ``save_dir``, with a warning that names both."""
        self._remove_partial_files()
        if resume and self.has_checkpoint():
            return self._resume()
        if resume:
            self.logger.info(
                f"Resume: no checkpoint in {self.save_dir}; starting from "
                f"{path or 'randomly initialised weights'}"
            )
        return self.load(path, checkpointables=[])

    def _remove_partial_files(self) -> None:
        if self.save_dir and self.save_to_disk and self.path_manager.isdir(self.save_dir):
            for name in self.path_manager.ls(self.save_dir):
                if name.endswith(PARTIAL_SUFFIX):
                    partial = os.path.join(self.save_dir, name)
                    self.logger.info(f"Removing {partial}, left by an interrupted save")
                    self.path_manager.rm(partial)

    def _resume(self):
        newest = self.get_checkpoint_file()
        candidates = [c for c in self.checkpoints_newest_first() if c != newest]
        failures = []
        if os.path.normpath(newest) == os.path.normpath(self.save_dir):
            newest = os.path.join(self.save_dir, "last_checkpoint")
            failures.append(f"{newest} names no file")
        else:
            candidates.insert(0, newest)
        for candidate in candidates:
            try:
                extra = self._load_own(candidate)
            except UnsafeCheckpointError:
                raise
            except (OSError, ValueError) as e:
                failures.append(f"{candidate}: {e}")
                continue
            if failures:
                self.logger.warning(
                    f"Resume: the newest checkpoint {newest} cannot be loaded ({failures[0]}); resuming from "
                    f"{candidate}, the newest intact checkpoint"
                )
            return extra
        raise ValueError(
            f"Cannot resume from {self.save_dir}: no intact checkpoint ({'; '.join(failures)}). "
            "Start afresh in another output dir, or without --resume"
        )

    def checkpoints_newest_first(self) -> List[str]:
        """The ``.pth`` files of ``save_dir``, most recently written first."""
        names = [n for n in self.path_manager.ls(self.save_dir) if n.endswith(".pth")]
        paths = [os.path.join(self.save_dir, n) for n in names]
        return sorted(paths, key=os.path.getmtime, reverse=True) if "://" not in self.save_dir else paths

    def _load_own(self, path: str):
        """Load a checkpoint this checkpointer wrote (named by ``last_checkpoint`` or found in
        ``save_dir``): never a pickle, which gcnet does not write."""
        if path.endswith(".pkl"):
            raise UnsafeCheckpointError(
                f"Refusing to unpickle {path}, named by {os.path.join(self.save_dir, 'last_checkpoint')}: "
                "gcnet writes its checkpoints as .pth files; remove the tag if you did not write it"
            )
        if not self.path_manager.isfile(path):
            raise FileNotFoundError(f"{path} does not exist")
        return self.load(path)

    def load(self, path: str, *args, **kwargs):
        """As detectron2's, on the local file of ``path`` (a remote one downloaded with
        timeouts into gcnet's cache), with the decision whether a ``.pkl`` may be read made
        on where its bytes came from (:func:`gcnet.utils.local_files.local_checkpoint`)."""
        if not path:
            return super().load(path, *args, **kwargs)
        parsed = urlparse(path)
        checkpoint = local_checkpoint(parsed._replace(query="").geturl() if "://" in path else path, self.path_manager)
        self._pickle_refusal = checkpoint.pickle_refusal
        try:
            query = f"?{parsed.query}" if "://" in path and parsed.query else ""
            return super().load(checkpoint.path + query, *args, **kwargs)
        finally:
            self._pickle_refusal = "only files named through load() are unpickled"
            self._parsed_url_during_load = None  # detectron2 resets it only after a load that succeeded

    def _load_file(self, filename: str):
        try:
            if filename.endswith(".pkl"):
                return self._load_pickle(filename)
            return super()._load_file(filename)
        except Exception as e:  # a corrupt file can make torch's unpickler raise almost anything
            if isinstance(e, (FileNotFoundError, UnsafeCheckpointError)):
                raise
            raise ValueError(f"Cannot load checkpoint {filename}: it is truncated or corrupt ({e})") from e

    def _load_pickle(self, filename: str):
        """A ``.pkl`` checkpoint of detectron2's or Detectron's model zoo, in detectron2's
        format, read from a trusted source without running code."""
        if self._pickle_refusal:
            raise UnsafeCheckpointError(f"Refusing to unpickle {filename}: {self._pickle_refusal}")
        data = load_pickle_file(filename)
        if not isinstance(data, dict):
            raise ValueError(f"a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # detectron2's model zoo
            return data
        data = data.get("blobs", data)  # Caffe2 detection models keep their weights under "blobs"
        weights = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f):
        return load_checkpoint_file(f)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if incompatible is not None:
            counters = [k for k in incompatible.missing_keys if k.endswith(".num_batches_tracked")]
            for key in counters:
                incompatible.missing_keys.remove(key)
        self.incompatible = incompatible
        return incompatible

    def unfilled_parameters(self) -> List[str]:
        """What the last load left unfilled in the model: its missing keys and those whose
        shape differs in the checkpoint (empty when the checkpoint filled the model)."""
        incompatible = getattr(self, "incompatible", None)
        if incompatible is None:
            return []
        return list(dict.fromkeys(list(incompatible.missing_keys) + [key for key, *_ in incompatible.incorrect_shapes]))

    def filled_parameters(self) -> List[str]:
        """The parameters of the model that the last load filled (a checkpoint of another
        model fills none). Parameters only: FrozenBN makes up missing statistics."""
        if getattr(self, "incompatible", None) is None:
            return []
        unfilled = set(self.unfilled_parameters())
        return [name for name, _ in self.model.named_parameters() if name not in unfilled]

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
