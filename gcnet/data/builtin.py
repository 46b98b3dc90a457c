"""Datasets registered by name under ``$DETECTRON2_DATASETS`` (default ``./datasets``), as
detectron2 registers its builtin ones."""

import os
from typing import Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .cityscapes import register_checked_cityscapes_semantic
from .coco import check_coco_files, register_checked_coco_instances
from .datasets_root import datasets_root, datasets_root_hint
from .pascal_voc import register_voc_semantic

__all__ = ["register_balloon", "require_datasets"]

# What to do when one of detectron2's builtin COCO datasets (coco_2017_*) is not on disk.
COCO_HOW_TO_CREATE = (
    "The layout is $DETECTRON2_DATASETS/coco/{{train2017,val2017,annotations}} ({hint}). Download "
    "train2017.zip, val2017.zip and annotations_trainval2017.zip from https://cocodataset.org/#download "
    "and unpack them into {root}/coco"
)


def register_balloon(root: str) -> None:
    """``balloon_train`` and ``balloon_val`` from ``root``/balloon: ``train/``, ``val/`` and
    ``annotations/balloon_instances_{train,val}.json``."""
    for split in ("train", "val"):
        register_checked_coco_instances(
            f"balloon_{split}",
            {"thing_classes": ["balloon"]},
            os.path.join(root, "balloon", "annotations", f"balloon_instances_{split}.json"),
            os.path.join(root, "balloon", split),
            how_to_create=(
                f"The layout is $DETECTRON2_DATASETS/balloon/{{train,val,annotations}} "
                f"({datasets_root_hint()}). "
                "Create it with: python tools/prepare_datasets.py balloon"
            ),
        )


def require_datasets(names: Union[str, Sequence[str]]) -> None:
    """Check that the COCO-format datasets ``names`` (ours and detectron2's builtin ones) are
    on disk before anything is built.

    Raises:
        FileNotFoundError: one line naming the missing file, the expected layout and how to
            get the data.
    """
    for name in [names] if isinstance(names, str) else names:
        if name not in DatasetCatalog.list():
            continue  # detectron2 names the unknown dataset and the registered ones
        metadata = MetadataCatalog.get(name)
        json_file, image_root = metadata.get("json_file", None), metadata.get("image_root", None)
        if not json_file or not image_root:
            continue  # not a COCO-format dataset
        how_to_create = metadata.get("how_to_create", "")
        if not how_to_create and name.startswith("coco_"):
            how_to_create = COCO_HOW_TO_CREATE.format(hint=datasets_root_hint(), root=datasets_root())
        check_coco_files(name, json_file, image_root, how_to_create)


_root = datasets_root()
register_balloon(_root)
register_checked_cityscapes_semantic(_root)
register_voc_semantic(_root)
