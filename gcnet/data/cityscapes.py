"""Cityscapes semantic segmentation with checks that name the file and what was expected
(``gcnet_cityscapes_fine_sem_seg_{train,val}``, beside detectron2's
``cityscapes_fine_sem_seg_{train,val}``), and the creation of the train-id label maps."""

import glob
import logging
import os
from typing import Dict, List

import numpy as np
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

from gcnet.utils.file_io import atomic_path

from .datasets_root import datasets_root_hint

__all__ = [
    "CITYSCAPES_SEM_SEG_SPLITS",
    "load_checked_cityscapes_semantic",
    "create_train_id_labels",
    "register_checked_cityscapes_semantic",
]

logger = logging.getLogger(__name__)

# gcnet's name -> (detectron2's name of the same split, its image and label folders).
CITYSCAPES_SEM_SEG_SPLITS = {
    f"gcnet_cityscapes_fine_sem_seg_{split}": (
        f"cityscapes_fine_sem_seg_{split}",
        f"cityscapes/leftImg8bit/{split}",
        f"cityscapes/gtFine/{split}",
    )
    for split in ("train", "val")
}
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
CREATE_TRAIN_IDS = "python tools/prepare_datasets.py cityscapes"
# cityscapesscripts' label id -> train id (255: ignored in training and evaluation).
ID_TO_TRAIN_ID = {
    label.id: (label.trainId if 0 <= label.trainId < 255 else 255) for label in CITYSCAPES_LABELS if label.id >= 0
}


def _layout_hint(root_hint: str) -> str:
    return (
        f"Expected leftImg8bit/<split>/<city>/*{IMAGE_SUFFIX} and gtFine/<split>/<city>/"
        f"*{LABEL_ID_SUFFIX} under $DETECTRON2_DATASETS/cityscapes ({root_hint})"
    )


def load_checked_cityscapes_semantic(image_dir: str, gt_dir: str) -> List[Dict]:
    """detectron2 dataset dicts (file_name, sem_seg_file_name, height, width) of a Cityscapes
    split, as detectron2's ``load_cityscapes_semantic``, after checking that both split folders
    and every image's train-id label exist."""
    root_hint = datasets_root_hint()
    for folder in (image_dir, gt_dir):
        if not PathManager.isdir(folder):
            raise FileNotFoundError(f"Cityscapes split folder {folder} not found. {_layout_hint(root_hint)}")
    dicts, missing = [], []
    for city in sorted(PathManager.ls(image_dir)):
        for name in sorted(PathManager.ls(os.path.join(image_dir, city))):
            image_file = os.path.join(image_dir, city, name)
            if not name.endswith(IMAGE_SUFFIX):
                raise ValueError(f"{image_file}: expected a Cityscapes image named <city>_<seq>_<frame>{IMAGE_SUFFIX}")
            label_file = os.path.join(gt_dir, city, name[: -len(IMAGE_SUFFIX)] + TRAIN_ID_SUFFIX)
            if not PathManager.isfile(label_file):
                missing.append(label_file)
                continue
            with Image.open(image_file) as im:  # reads the header only
                width, height = im.size
            dicts.append(dict(file_name=image_file, sem_seg_file_name=label_file, height=height, width=width))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(missing) + len(dicts)} label files *{TRAIN_ID_SUFFIX} are missing "
            f"under {gt_dir} (first: {missing[0]}). Create them from the *{LABEL_ID_SUFFIX} "
            f"files with: {CREATE_TRAIN_IDS}"
        )
    if not dicts:
        raise FileNotFoundError(f"No Cityscapes images in {image_dir}. {_layout_hint(root_hint)}")
    return dicts


def create_train_id_labels(gt_root: str) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` beside every ``*_gtFine_labelIds.png`` under
    ``gt_root`` with cityscapesscripts' label table (the maps cityscapesscripts'
    createTrainIdLabelImgs renders from the polygons). Existing files are kept.

    Returns:
        the number of files written.

    Raises:
        ValueError: ``gt_root`` holds no label map, or a label map is not a single-channel
            image of Cityscapes label ids.
    """
    lut = np.full(256, -1, dtype=np.int16)
    for label_id, train_id in ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    written = 0
    found = sorted(glob.glob(os.path.join(gt_root, "**", "*" + LABEL_ID_SUFFIX), recursive=True))
    if not found:
        raise ValueError(
            f"{gt_root} holds no *{LABEL_ID_SUFFIX} file: unpack Cityscapes' gtFine_trainvaltest.zip there"
        )
    for label_ids in found:
        target = label_ids[: -len(LABEL_ID_SUFFIX)] + TRAIN_ID_SUFFIX
        if os.path.exists(target):
            continue
        with Image.open(label_ids) as opened:
            if opened.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(
                    f"{label_ids}: a {opened.mode} image; Cityscapes' label maps have one channel of label ids"
                )
            ids = np.asarray(opened).astype(np.int64)
        train_ids = np.where((ids >= 0) & (ids < 256), lut[np.clip(ids, 0, 255)], -1)
        if (train_ids < 0).any():
            bad = sorted(int(v) for v in np.unique(ids[train_ids < 0]))
            raise ValueError(f"{label_ids}: values {bad} are not Cityscapes label ids ({sorted(ID_TO_TRAIN_ID)})")
        with atomic_path(target) as tmp:
            Image.fromarray(train_ids.astype(np.uint8)).save(tmp, format="PNG")
        written += 1
    logger.info(f"Wrote {written} *{TRAIN_ID_SUFFIX} files under {gt_root}")
    return written


def register_checked_cityscapes_semantic(root: str) -> None:
    """Register the splits of :data:`CITYSCAPES_SEM_SEG_SPLITS` (from ``root``/cityscapes),
    loaded with :func:`load_checked_cityscapes_semantic`, with the metadata of detectron2's
    registration of the same split."""
    for name, (d2_name, image_dir, gt_dir) in CITYSCAPES_SEM_SEG_SPLITS.items():
        image_dir, gt_dir = os.path.join(root, image_dir), os.path.join(root, gt_dir)
        DatasetCatalog.register(name, lambda x=image_dir, y=gt_dir: load_checked_cityscapes_semantic(x, y))
        metadata = {k: v for k, v in MetadataCatalog.get(d2_name).as_dict().items() if k != "name"}
        MetadataCatalog.get(name).set(**dict(metadata, image_dir=image_dir, gt_dir=gt_dir))
