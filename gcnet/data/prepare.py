"""Datasets prepared in the layout gcnet's and detectron2's builtin registrations read: what
``tools/prepare_datasets.py`` runs."""

import os

from .ade20k import prepare_ade20k_labels
from .balloon import BALLOON_URL, check_balloon, prepare_balloon
from .cityscapes import create_train_id_labels
from .datasets_root import datasets_root
from .pascal_voc import prepare_voc_aug

__all__ = ["PREPARED_DATASETS", "prepare_dataset"]

PREPARED_DATASETS = ("balloon", "cityscapes", "ade20k", "voc_aug")


def prepare_dataset(dataset: str, root: str = "", *, url: str = BALLOON_URL, sbd: str = "") -> str:
    """Prepare ``dataset`` (one of :data:`PREPARED_DATASETS`) under ``root`` (default: the
    datasets folder, ``$DETECTRON2_DATASETS``) and return one line saying what was done.

    Args:
        url: balloon: where to download balloon_dataset.zip from, or a local copy of it.
        sbd: voc_aug: SBD's ``benchmark_RELEASE`` folder.

    Raises:
        ValueError, OSError (FileNotFoundError, DownloadError): with a message that names the
            file or folder and what to do; nothing is left half-written.
    """
    root = root or datasets_root()
    if dataset == "balloon":
        existing = os.path.join(root, "balloon")
        if os.path.exists(existing):
            return f"{existing} is already prepared ({check_balloon(existing)}); left as it is"
        return f"Prepared {prepare_balloon(root, url)}"
    if dataset == "ade20k":
        return f"Wrote {prepare_ade20k_labels(root)} ADE20K label maps"
    if dataset == "voc_aug":
        if not sbd:
            raise ValueError("voc_aug needs SBD's benchmark_RELEASE folder (--sbd)")
        written, images = prepare_voc_aug(root, sbd)
        return f"Wrote {written} SegmentationClassAug label maps and {images} image ids to aug.txt"
    if dataset == "cityscapes":
        cityscapes = os.path.join(root, "cityscapes")
        gt_root = os.path.join(cityscapes, "gtFine")
        if not os.path.isdir(gt_root):
            raise FileNotFoundError(f"{gt_root} not found: unpack Cityscapes' gtFine_trainvaltest.zip in {cityscapes}")
        return f"Wrote {create_train_id_labels(gt_root)} train-id label maps under {gt_root}"
    raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(PREPARED_DATASETS)}")
