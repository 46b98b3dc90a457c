"""Images decoded and preprocessed in DataLoader workers, in batches that never straddle a
shard; an image that cannot be read comes as an error record, not as an exception."""

import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detectron2.data.build import trivial_batch_collator

from gcnet.data.image_io import read_image
from gcnet.data.image_sources import ImageRecord

__all__ = ["ImageFileDataset", "shard_batches", "build_image_loader"]


class ImageFileDataset(Dataset):
    """The model inputs of ``records``: ``preprocess`` (a :class:`gcnet.engine.TestPreprocessor`)
    of each image read as BGR, with its ``image_id`` and ``file_name``; for an image that cannot
    be read, ``{"image_id", "file_name", "error": the reason}``."""

    def __init__(self, records: Sequence[ImageRecord], preprocess: Callable[[np.ndarray], Dict]):
        self.records = records
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict:
        record = self.records[index]
        item = {"image_id": record.image_id, "file_name": record.file_name}
        if "://" not in record.path and not os.path.isfile(record.path):
            return dict(item, error="no such file")
        try:
            item.update(self.preprocess(read_image(record.path, format="BGR")))
        except (ValueError, OSError) as e:  # read_image names the file first
            return dict(item, error=str(e).removeprefix(f"{record.path}: "))
        return item


def shard_batches(shard_sizes: Sequence[Tuple[int, int]], batch_size: int) -> List[Tuple[int, List[int]]]:
    """(shard, dataset indices) of each batch, for a dataset that holds the images of the
    shards ``shard_sizes`` ((shard, number of images)) one after the other: consecutive
    images, ``batch_size`` at most, of one shard."""
    batches, start = [], 0
    for shard, size in shard_sizes:
        for first in range(start, start + size, batch_size):
            batches.append((shard, list(range(first, min(first + batch_size, start + size)))))
        start += size
    return batches


def build_image_loader(dataset: ImageFileDataset, batches: Sequence[List[int]], num_workers: int, pin_memory: bool):
    """A DataLoader of ``dataset`` that yields the ``batches`` (lists of indices) in order, as
    lists of :class:`ImageFileDataset` items, decoded by ``num_workers`` processes."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        pin_memory=pin_memory and torch.cuda.is_available(),
    )
