"""ADE20K (SceneParsing challenge, 150 classes) for detectron2's builtin
``ade20k_sem_seg_{train,val}``, which read ``ADEChallengeData2016/images/{training,validation}``
and the label maps of ``annotations_detectron2/``: this module writes those from the
challenge's ``annotations/`` as detectron2's ``datasets/prepare_ade20k_sem_seg.py`` does
(mmsegmentation's ``reduce_zero_label``: "other" (0) becomes the ignore value 255, the classes
1..150 become 0..149)."""

import glob
import logging
import os

import numpy as np
from PIL import Image

from gcnet.utils.file_io import atomic_path

__all__ = ["ADE20K_ROOT", "ADE20K_NUM_CLASSES", "prepare_ade20k_labels"]

logger = logging.getLogger(__name__)

ADE20K_ROOT = "ADEChallengeData2016"
ADE20K_NUM_CLASSES = 150
_SPLITS = ("training", "validation")


def _detectron2_label(annotation_file: str) -> np.ndarray:
    ids = np.asarray(Image.open(annotation_file))
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(
            f"{annotation_file}: expected a single-channel 8-bit label map, got {ids.dtype} of shape {ids.shape}"
        )
    if ids.max() > ADE20K_NUM_CLASSES:
        bad = sorted(int(v) for v in np.unique(ids[ids > ADE20K_NUM_CLASSES]))
        raise ValueError(
            f"{annotation_file}: values {bad} are not ADE20K class ids (0 = other, 1..{ADE20K_NUM_CLASSES})"
        )
    return ids - np.uint8(1)  # 0 wraps around to 255


def prepare_ade20k_labels(root: str) -> int:
    """Write ``annotations_detectron2/<split>/<name>.png`` for every
    ``annotations/<split>/<name>.png`` under ``root``/ADEChallengeData2016 (existing files are
    kept), checking that every value is an ADE20K class id.

    Returns:
        the number of files written.
    """
    dataset = os.path.join(root, ADE20K_ROOT)
    if not os.path.isdir(os.path.join(dataset, "annotations")):
        raise FileNotFoundError(
            f"{os.path.join(dataset, 'annotations')} not found: unpack ADEChallengeData2016.zip "
            f"(http://sceneparsing.csail.mit.edu) into {root}"
        )
    written = 0
    for split in _SPLITS:
        out_dir = os.path.join(dataset, "annotations_detectron2", split)
        for annotation in sorted(glob.glob(os.path.join(dataset, "annotations", split, "*.png"))):
            target = os.path.join(out_dir, os.path.basename(annotation))
            if os.path.exists(target):
                continue
            labels = _detectron2_label(annotation)
            os.makedirs(out_dir, exist_ok=True)
            with atomic_path(target) as tmp:
                Image.fromarray(labels).save(tmp, format="PNG")
            written += 1
    logger.info(f"Wrote {written} label maps under {os.path.join(dataset, 'annotations_detectron2')}")
    return written
