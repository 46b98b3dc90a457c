"""The output folder of a prediction run, complete or resumable whenever the run is killed.

Layout (``root``)::

    run.json            the plan (:class:`~.plan.PredictionPlan`), the task, the command, and
                        whether the results below are complete
    config.yaml         the config of the run
    shards/000042.json  the predictions of shard 42, written at once (removed after the merge)
    predictions.json    detectors: the COCO results of every image, in input order
    sem_seg/000042/<image id>.png   semantic segmentation: each image's label map
    images.json         COCO ``images`` (id, file_name, height, width; ``sem_seg_file_name``)
                        and ``categories`` of the model: the index of the results
    unreadable.json     the images that could not be read: id, file_name and the reason

Every file is written to a temporary name and renamed (:func:`gcnet.utils.file_io.atomic_open`),
so a shard file exists only once all of its predictions do, and a kill leaves at most
``*.partial`` files, which the next run removes. The results are merged from the shards in
their order, so they do not depend on which process predicted which shard, or when.
"""

import contextlib
import json
import os
import shutil
import uuid
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Set

from detectron2.config import LazyConfig

from gcnet.utils.file_io import PARTIAL_SUFFIX, atomic_open, atomic_path
from gcnet.utils.run_lock import FolderInUseError, lock_folder, release_folder

from .plan import PredictionPlan

__all__ = ["PredictionFolder", "RESULT_FILES"]

# What a finished run leaves in its folder.
RESULTS, INDEX, UNREADABLE = "predictions.json", "images.json", "unreadable.json"
RESULT_FILES = (RESULTS, INDEX, UNREADABLE)
RUN_FILE, CONFIG_FILE, SHARDS, LABEL_MAPS = "run.json", "config.yaml", "shards", "sem_seg"


def _dump(data) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _write_json(path: str, data) -> None:
    with atomic_open(path, "w") as f:
        f.write(_dump(data))


class _ListWriter:
    """A JSON list written to ``f`` an item at a time, one a line (a merge holds one shard)."""

    def __init__(self, f: IO, prefix: str = ""):
        self.f, self.count = f, 0
        f.write(prefix + "[")

    def extend(self, items: Iterable) -> None:
        for item in items:
            self.f.write(("," if self.count else "") + "\n" + _dump(item))
            self.count += 1

    def close(self, suffix: str = "") -> None:
        self.f.write("\n]" + suffix + "\n")


class PredictionFolder:
    """The folder ``root`` of a prediction run (see the module's docstring)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, *names: str) -> str:
        return os.path.join(self.root, *names)

    def check_writable(self, inputs: Sequence[str] = ()) -> None:
        """That the folder is one (or can be created) and is writable, and is not inside a
        folder of ``inputs`` (where its label maps would become inputs). Nothing is created.

        Raises:
            ValueError: naming ``--output`` and what is wrong.
        """
        root = os.path.abspath(self.root)
        existing = root
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ValueError(f"--output {self.root}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--output {self.root}: {existing} is not writable")
        for spec in inputs:
            folder = os.path.realpath(os.path.expanduser(spec))
            if os.path.isdir(folder) and os.path.commonpath([os.path.realpath(root), folder]) == folder:
                raise ValueError(
                    f"--output {self.root} is inside {spec}, a folder --input reads: choose an output folder outside it"
                )

    def lock(self) -> None:
        """Take the folder's lock (:func:`gcnet.utils.run_lock.lock_folder`) for this process.

        Raises:
            ValueError: another live run holds it (named).
        """
        try:
            lock_folder(self.root)
        except FolderInUseError as e:
            raise ValueError(f"--output {e}") from None

    def read_run(self) -> Optional[Dict]:
        """The content of ``run.json``, or None where there is none (or it is unreadable)."""
        try:
            with open(self.path(RUN_FILE), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def finished_shards(self) -> Set[int]:
        if not os.path.isdir(self.path(SHARDS)):
            return set()
        names = [n[: -len(".json")] for n in os.listdir(self.path(SHARDS)) if n.endswith(".json")]
        return {int(n) for n in names if n.isdigit()}

    def check(self, plan: PredictionPlan) -> bool:
        """Whether the folder already holds the complete results of ``plan`` (nothing to do);
        called before :meth:`start`.

        Raises:
            ValueError: the folder holds what this run would replace: the results or finished
                shards of another plan, or result files it did not write.
        """
        if os.path.isdir(self.root):  # not in use by a live run (its lock is taken again by start())
            self.lock()
            release_folder(self.root)
        run = self.read_run()
        if run is None:
            clash = [name for name in (*RESULT_FILES, SHARDS) if os.path.exists(self.path(name))]
            if clash:
                raise ValueError(
                    f"--output {self.root} holds {clash[0]}, which this run would replace; give an empty or new folder"
                )
            return False
        done = run.get("complete") or self.finished_shards()
        try:
            difference = plan.difference(PredictionPlan.from_dict(run["plan"]))
        except (KeyError, TypeError):  # a run.json of another version
            difference = f"a plan this version does not read in {self.path(RUN_FILE)}"
        if difference and done:
            raise ValueError(
                f"--output {self.root} holds the predictions of another run ({difference}): give another folder, "
                "or remove it to start afresh"
            )
        return bool(run.get("complete")) and not difference

    def start(self, plan: PredictionPlan, task: str, cfg, command: str) -> str:
        """Create the folder (if new), write ``run.json`` for ``plan`` (not complete) and
        ``config.yaml``, and remove what a killed run left half-written; the folder is locked
        until :meth:`merge` (or the process) ends. Returns this start's token (written in
        ``run.json``, for the processes to check that they all see it).

        Raises:
            ValueError: another live run holds the folder.
        """
        os.makedirs(self.path(SHARDS), exist_ok=True)
        self.lock()
        for folder in (self.root, self.path(SHARDS)):
            for name in os.listdir(folder):
                if PARTIAL_SUFFIX in name:
                    os.remove(os.path.join(folder, name))
        token = uuid.uuid4().hex
        run = dict(plan=plan.to_dict(), task=task, command=command, complete=False, token=token)
        _write_json(self.path(RUN_FILE), run)
        with atomic_path(self.path(CONFIG_FILE)) as partial:
            LazyConfig.save(cfg, partial)
        return token

    def shard_file(self, shard: int) -> str:
        return self.path(SHARDS, f"{shard:06d}.json")

    def label_map_file(self, shard: int, image_id: int) -> str:
        """Where an image's label map goes, relative to the folder."""
        return os.path.join(LABEL_MAPS, f"{shard:06d}", f"{image_id}.png")

    def start_label_maps(self, shard: int) -> None:
        """Create the folder of a shard's label maps, without what a killed run left half-written."""
        folder = os.path.dirname(self.path(self.label_map_file(shard, 0)))
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(PARTIAL_SUFFIX):
                os.remove(os.path.join(folder, name))

    def write_label_map(self, relative: str, png: bytes) -> None:
        with atomic_open(self.path(relative)) as f:
            f.write(png)

    def write_shard(self, shard: int, images: List[Dict], predictions: List[Dict], unreadable: List[Dict]) -> None:
        """Write a shard's predictions at once: its readable ``images`` (COCO image entries),
        the ``predictions`` of a detector, and the ``unreadable`` images."""
        _write_json(self.shard_file(shard), dict(images=images, predictions=predictions, unreadable=unreadable))

    def _shards(self, count: int) -> Iterator[Dict]:
        for shard in range(count):
            with open(self.shard_file(shard), encoding="utf-8") as f:
                yield json.load(f)

    def merge(self, plan: PredictionPlan, task: str, index: Dict) -> Dict[str, int]:
        """Merge the shards of ``plan`` into the result files (``index``: what ``images.json``
        holds besides its images: the categories), in one pass, mark the run complete, and
        remove the shards. Returns the counts of images, predictions and unreadable images.

        Raises:
            ValueError: a shard is missing (written on a machine that does not share the folder).
        """
        missing = sorted(set(range(plan.num_shards)) - self.finished_shards())
        if missing:
            raise ValueError(
                f"--output {self.root}: {len(missing)} of {plan.num_shards} shards are missing after every process "
                f"finished (the first: {self.shard_file(missing[0])}); the folder must be one that all machines share"
            )
        index_prefix = "{" + "".join(f"{_dump(key)}:{_dump(value)}," for key, value in index.items()) + '"images":'
        outputs = [("images", INDEX, index_prefix, "}"), ("unreadable", UNREADABLE, "", "")]
        if task == "instances":
            outputs.append(("predictions", RESULTS, "", ""))
        with contextlib.ExitStack() as stack:
            writers = {
                key: _ListWriter(stack.enter_context(atomic_open(self.path(name), "w")), prefix)
                for key, name, prefix, _ in outputs
            }
            for shard in self._shards(plan.num_shards):
                for key, writer in writers.items():
                    writer.extend(shard[key])
            for key, _, _, suffix in outputs:
                writers[key].close(suffix)
        counts = {key: writer.count for key, writer in writers.items()}
        _write_json(self.path(RUN_FILE), dict(self.read_run(), complete=True, counts=counts))
        shutil.rmtree(self.path(SHARDS))
        release_folder(self.root)
        return counts
