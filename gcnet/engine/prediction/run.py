"""A prediction run in each process of a launch (:func:`gcnet.engine.launch`): the shards not
finished yet are split across the processes, each process predicts the images of its shards
in batches (decoded by DataLoader workers) and writes each shard at once; then the first
process merges the shards into the results. A run killed at any moment and started again
predicts only the shards it had not finished, and ends with the same results."""

import dataclasses
import logging
import os
import shlex
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import tqdm

from detectron2.modeling import GeneralizedRCNN
from detectron2.utils import comm

from gcnet.data.image_sources import collect_images

from ..config import inference_device
from ..interruption import check_interrupted
from ..predictor import Predictor
from .folder import INDEX, RESULTS, UNREADABLE, PredictionFolder
from .loader import ImageFileDataset, build_image_loader, shard_batches
from .outputs import IGNORE_LABELS, dataset_category_ids, encode_png, instance_results, label_dtype, label_map
from .plan import DEFAULT_SHARD_SIZE, PredictionPlan, config_digest, read_image_list, write_image_list

__all__ = [
    "plan_run",
    "PredictionOptions",
    "PredictionRun",
    "shard_state",
]

logger = logging.getLogger(__name__)

# Seconds between two progress lines when the progress bar goes to a file (a cluster's log).
LOG_PROGRESS_INTERVAL = 60.0


@dataclasses.dataclass
class PredictionOptions:
    """How a run predicts: into ``output``, on ``device`` (default: the config's
    ``train.device``), with ``num_workers`` decoding processes per process (default: the
    config's ``dataloader.test.num_workers``), and ``command``, the command line that started
    it (kept in ``run.json``). The inference fast path is the config's ``train.inference``."""

    output: str
    device: Optional[str] = None
    num_workers: Optional[int] = None
    command: str = ""


def _share_cpu_threads(device: torch.device) -> None:
    """On the CPU, the processes of a machine share its cores (unless OMP_NUM_THREADS says
    how many each takes): results depend on the number of threads a process sums with."""
    local = comm.get_local_size()
    if device.type == "cpu" and local > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() // local))


def _pending_shards(folder: PredictionFolder, plan: PredictionPlan, token: Optional[str]) -> List[int]:
    """The shards no run has finished, as the first process sees them, once every process has
    checked that it sees the folder the first one started (``token``).

    Raises:
        ValueError: on every process, when one does not see the folder.
    """
    comm.synchronize()
    tokens = comm.all_gather((folder.read_run() or {}).get("token"))
    blind = [rank for rank, seen in enumerate(tokens) if seen != tokens[0]]
    if blind:
        raise ValueError(
            f"--output {folder.root}: process {blind[0]} does not see the folder process 0 writes; it must be on a "
            "file system that all machines share"
        )
    pending = sorted(set(range(plan.num_shards)) - folder.finished_shards()) if comm.is_main_process() else None
    return comm.all_gather(pending)[0]


class _ShardWriter:
    """Collects a shard's predictions, batch after batch, and writes the shard when it ends."""

    def __init__(self, folder: PredictionFolder, task: str, category_ids: List[int], threshold: float):
        self.folder, self.task, self.category_ids, self.threshold = folder, task, category_ids, threshold
        self.shard: Optional[int] = None
        self.images: List[Dict] = []
        self.predictions: List[Dict] = []
        self.unreadable: List[Dict] = []

    def add(self, shard: int, batch: List[Dict], outputs: List[Dict]) -> None:
        if shard != self.shard:
            self.flush()
            self.shard = shard
            if self.task == "sem_seg":
                self.folder.start_label_maps(shard)
        self.unreadable += [
            {"id": x["image_id"], "file_name": x["file_name"], "reason": x["error"]} for x in batch if "error" in x
        ]
        for x, output in zip([x for x in batch if "error" not in x], outputs):
            image = {"id": x["image_id"], "file_name": x["file_name"], "height": x["height"], "width": x["width"]}
            if self.task == "instances":
                self.predictions += instance_results(output["instances"], x["image_id"], self.category_ids)
            else:
                image["sem_seg_file_name"] = self.folder.label_map_file(shard, x["image_id"])
                labels = label_map(output["sem_seg"], self.threshold)
                self.folder.write_label_map(image["sem_seg_file_name"], encode_png(labels))
            self.images.append(image)

    def flush(self) -> None:
        if self.shard is not None:
            self.folder.write_shard(self.shard, self.images, self.predictions, self.unreadable)
        self.shard, self.images, self.predictions, self.unreadable = None, [], [], []


def _progress_bar(total: int) -> tqdm.tqdm:
    """The first process's bar over its images, with images/s and the time left: redrawn in a
    terminal, a line every :data:`LOG_PROGRESS_INTERVAL` seconds in a log file."""
    interactive = sys.stderr.isatty()
    return tqdm.tqdm(
        total=total,
        desc="predict",
        unit="image",
        file=sys.stderr,
        disable=not comm.is_main_process(),
        mininterval=0.1 if interactive else LOG_PROGRESS_INTERVAL,
        dynamic_ncols=interactive,
    )


def _shard_size(plan: PredictionPlan, shard: int) -> int:
    return min(plan.shard_size, plan.images - shard * plan.shard_size)


def _predict_shards(
    predictor: Predictor,
    writer: _ShardWriter,
    plan: PredictionPlan,
    images_file: str,
    shards: List[int],
    num_workers: int,
) -> None:
    """Predict the images of ``shards`` (ascending) and write each shard when it is done."""
    wanted = set(shards)
    records = [record for _, record in read_image_list(images_file, keep=lambda i: plan.shard_of(i) in wanted)]
    batches = shard_batches([(shard, _shard_size(plan, shard)) for shard in shards], plan.batch_size)
    dataset = ImageFileDataset(records, predictor.preprocessor)
    loader = build_image_loader(dataset, [b for _, b in batches], num_workers, predictor.device.type == "cuda")
    with _progress_bar(len(records)) as progress:
        for (shard, _), batch in zip(batches, loader):
            check_interrupted()
            readable = [x for x in batch if "error" not in x]
            writer.add(shard, batch, predictor.predict_batch(readable) if readable else [])
            progress.update(len(batch))
    writer.flush()


def _index(predictor: Predictor, task: str, category_ids: List[int]) -> Dict:
    """What images.json holds besides the images: the model's categories (and the value of
    the pixels of a label map below the threshold)."""
    metadata = predictor.metadata
    if task == "instances":
        return {"categories": [{"id": i, "name": n} for i, n in zip(category_ids, metadata.thing_classes)]}
    classes = metadata.stuff_classes
    ignore = IGNORE_LABELS[label_dtype(len(classes))]
    return {"categories": [{"id": i, "name": n} for i, n in enumerate(classes)], "ignore_label": ignore}


def plan_run(
    cfg,
    inputs: Sequence[str],
    output: str,
    images_file: str,
    *,
    image_root: Optional[str] = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 1,
    confidence_threshold: float = 0.0,
) -> Tuple[PredictionPlan, bool]:
    """Before any process starts: check the options and the output folder, list the images of
    ``inputs`` (:func:`gcnet.data.collect_images`) into ``images_file``, and return the plan of
    the run and whether ``output`` already holds its complete results (nothing to do).

    Raises:
        ValueError: naming the option, input or folder that is wrong.
    """
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"--shard-size and --batch-size must be at least 1, got {shard_size} and {batch_size}")
    if not 0 <= confidence_threshold <= 1:
        raise ValueError(f"--confidence-threshold must be in [0, 1], got {confidence_threshold:g}")
    if not cfg.train.init_checkpoint:
        raise ValueError(
            "train.init_checkpoint is empty: the model would predict with random weights; give its checkpoint "
            "(train.init_checkpoint=<file or gcnet:// name>)"
        )
    folder = PredictionFolder(output)
    folder.check_writable(inputs)
    records = collect_images(inputs, image_root)
    digest = write_image_list(records, images_file)
    plan = PredictionPlan(len(records), digest, config_digest(cfg), shard_size, batch_size, confidence_threshold)
    return plan, folder.check(plan)


class PredictionRun:
    """A prediction run in this process of a launch: :meth:`start` takes this process's share of
    the unfinished shards, :meth:`predict` predicts and writes them, :meth:`finish` waits for
    the others and, in the first process, merges the shards into the results.

    Building it builds the model and loads its weights (a checkpoint that does not fit the
    model raises :class:`~gcnet.engine.CheckpointMismatchError`).
    """

    def __init__(self, cfg, plan: PredictionPlan, images_file: str, options: PredictionOptions):
        self.cfg, self.plan, self.images_file, self.options = cfg, plan, images_file, options
        device = inference_device(cfg, options.device)
        _share_cpu_threads(device)
        # The first process of each machine measures the "auto" inference options; the others
        # then take its choice (gcnet.engine.calibration) instead of measuring beside it.
        if comm.get_local_rank() != 0:
            comm.synchronize()
        self.predictor = Predictor(cfg, str(device), plan.confidence_threshold)
        if comm.get_local_rank() == 0:
            comm.synchronize()
        self.task = "instances" if isinstance(self.predictor.model, GeneralizedRCNN) else "sem_seg"
        self.category_ids = dataset_category_ids(self.predictor.metadata) if self.task == "instances" else []
        self.folder = PredictionFolder(options.output)
        self.pending: List[int] = []
        self.started = time.perf_counter()

    def start(self) -> List[int]:
        """Start the folder (first process) and return the unfinished shards, which every
        process has agreed on.

        Raises:
            ValueError: a process does not see the folder that the first one started.
        """
        token = (
            self.folder.start(self.plan, self.task, self.cfg, self.options.command) if comm.is_main_process() else None
        )
        self.pending = _pending_shards(self.folder, self.plan, token)
        logger.info(
            f"Predicting {self.predicted} of {self.plan.images} images ({len(self.pending)} of {self.plan.num_shards} "
            f"shards of {self.plan.shard_size}) in {comm.get_world_size()} process(es), batches of "
            f"{self.plan.batch_size}, on {self.predictor.device}"
        )
        return self.pending

    @property
    def predicted(self) -> int:
        """The images this run predicts (those of the unfinished shards)."""
        return sum(_shard_size(self.plan, shard) for shard in self.pending)

    def predict(self) -> None:
        """Predict this process's shards (every ``world size``-th unfinished one), writing each."""
        cfg, options = self.cfg, self.options
        num_workers = cfg.dataloader.test.get("num_workers", 0) if options.num_workers is None else options.num_workers
        writer = _ShardWriter(self.folder, self.task, self.category_ids, self.plan.confidence_threshold)
        mine = self.pending[comm.get_rank() :: comm.get_world_size()]
        self.started = time.perf_counter()
        _predict_shards(self.predictor, writer, self.plan, self.images_file, mine, num_workers)

    def finish(self) -> Optional[Dict[str, int]]:
        """Wait for every process, then, in the first one, merge the shards and return the
        counts of ``images``, ``predictions`` and ``unreadable`` images (None elsewhere).

        Raises:
            ValueError: a shard is missing (the machines do not share the folder).
        """
        comm.synchronize()
        if not comm.is_main_process():
            return None
        seconds = time.perf_counter() - self.started
        counts = self.folder.merge(self.plan, self.task, _index(self.predictor, self.task, self.category_ids))
        logger.info(
            f"Predicted {self.predicted} images in {seconds:.1f} s ({self.predicted / max(seconds, 1e-9):.2f} "
            f"images/s) in {comm.get_world_size()} process(es)"
        )
        results = f"{RESULTS} ({counts['predictions']} instances), " if self.task == "instances" else ""
        logger.info(
            f"Results in {self.folder.root}: {results}{INDEX} ({counts['images']} images), {UNREADABLE} "
            f"({counts['unreadable']} images that could not be read)"
        )
        return counts


def shard_state(output: str, plan: PredictionPlan) -> Callable[[], str]:
    """What a stopped prediction run keeps, for :func:`gcnet.engine.exit_on_stop`: its finished
    shards, from which the same command continues."""

    def state() -> str:
        finished = len(PredictionFolder(output).finished_shards())
        return (
            f"{finished} of {plan.num_shards} shards are finished in {os.path.join(output, 'shards')}, and the same "
            f"command continues from them: {shlex.join(['python', *sys.argv])}"
        )

    return state
