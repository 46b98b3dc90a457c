"""Datasets registered by name under ``$DETECTRON2_DATASETS`` (default ``./datasets``), as
detectron2 registers its builtin ones."""
import os

from .cityscapes import register_checked_cityscapes_semantic
from .coco import register_checked_coco_instances
from .datasets_root import datasets_root, datasets_root_hint
from .pascal_voc import register_voc_semantic

__all__ = ["register_balloon"]


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


_root = datasets_root()
register_balloon(_root)
register_checked_cityscapes_semantic(_root)
register_voc_semantic(_root)
