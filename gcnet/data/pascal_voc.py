"""Pascal VOC 2012 semantic segmentation with the SBD "aug" images, as mmsegmentation's
``voc12aug``: ``voc_2012_aug_sem_seg_train`` (VOC's ``train.txt`` with its
``SegmentationClass`` maps and ``aug.txt`` with the ``SegmentationClassAug`` maps converted
from SBD: 1464 + 9118 = 10582 images) and ``voc_2012_sem_seg_val`` (VOC's 1449 ``val.txt``
images), under ``$DETECTRON2_DATASETS/VOC2012`` beside detectron2's ``voc_2012_*`` detection
sets."""

import glob
import logging
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

from gcnet.utils.file_io import atomic_path, atomic_write

from .datasets_root import datasets_root_hint

__all__ = [
    "VOC_SEM_SEG_CLASSES",
    "VOC_SEM_SEG_SPLITS",
    "load_voc_semantic",
    "prepare_voc_aug",
    "register_voc_semantic",
]

logger = logging.getLogger(__name__)

VOC_ROOT = "VOC2012"
VOC_SEM_SEG_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
# dataset name -> (image list in ImageSets/Segmentation, label folder) parts
VOC_SEM_SEG_SPLITS = {
    "voc_2012_aug_sem_seg_train": (("train", "SegmentationClass"), ("aug", "SegmentationClassAug")),
    "voc_2012_sem_seg_val": (("val", "SegmentationClass"),),
}
CREATE_AUG = "python tools/prepare_datasets.py voc_aug --sbd <SBD's benchmark_RELEASE folder>"


def _read_ids(list_file: str) -> List[str]:
    with PathManager.open(list_file, "r") as f:
        return [line.strip() for line in f if line.strip()]


def _layout_hint(label_dir: str) -> str:
    hint = (
        f"Expected JPEGImages/<id>.jpg, {label_dir}/<id>.png and ImageSets/Segmentation/<split>.txt "
        f"under $DETECTRON2_DATASETS/{VOC_ROOT} ({datasets_root_hint()})"
    )
    if label_dir.endswith("Aug"):
        hint += f"; create aug.txt and SegmentationClassAug/ with: {CREATE_AUG}"
    return hint


def load_voc_semantic(voc_root: str, parts: Sequence[Tuple[str, str]]) -> List[Dict]:
    """detectron2 dataset dicts (file_name, sem_seg_file_name) of the images listed in
    ``ImageSets/Segmentation/<split>.txt`` for each (split, label folder) of ``parts``, after
    checking that every list, image and label map exists."""
    dicts = []
    for split, label_dir in parts:
        list_file = os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")
        if not PathManager.isfile(list_file):
            raise FileNotFoundError(f"Pascal VOC image list {list_file} not found. {_layout_hint(label_dir)}")
        missing = []
        for image_id in _read_ids(list_file):
            image = os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg")
            label = os.path.join(voc_root, label_dir, f"{image_id}.png")
            missing += [path for path in (image, label) if not PathManager.isfile(path)]
            dicts.append(dict(file_name=image, sem_seg_file_name=label))
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} files of the images listed in {list_file} are missing (first: {missing[0]}). "
                f"{_layout_hint(label_dir)}"
            )
    return dicts


def register_voc_semantic(root: str) -> None:
    """Register :data:`VOC_SEM_SEG_SPLITS` from ``root``/VOC2012, with the metadata of
    detectron2's semantic segmentation sets (``stuff_classes``, ``ignore_label`` 255)."""
    voc_root = os.path.join(root, VOC_ROOT)
    for name, parts in VOC_SEM_SEG_SPLITS.items():
        DatasetCatalog.register(name, lambda parts=parts: load_voc_semantic(voc_root, parts))
        MetadataCatalog.get(name).set(
            stuff_classes=list(VOC_SEM_SEG_CLASSES),
            image_root=os.path.join(voc_root, "JPEGImages"),
            sem_seg_root=os.path.join(voc_root, parts[0][1]),
            evaluator_type="sem_seg",
            ignore_label=255,
        )


def _sbd_label(mat_file: str) -> np.ndarray:
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as e:
        raise ImportError("Reading SBD's .mat label files needs scipy: pip install scipy") from e
    try:
        labels = loadmat(mat_file)["GTcls"][0]["Segmentation"][0]
    except (KeyError, IndexError, ValueError, OSError, MatReadError) as e:  # a truncated file is an OSError
        raise ValueError(
            f"{mat_file}: expected an SBD class label file (GTcls.Segmentation), got {e!r}; "
            "unpack SBD's benchmark.tgz again"
        ) from e
    labels = np.asarray(labels)
    bad = sorted(int(v) for v in np.unique(labels) if not (0 <= v < len(VOC_SEM_SEG_CLASSES) or v == 255))
    if labels.ndim != 2 or bad:
        raise ValueError(
            f"{mat_file}: expected a 2-d map of VOC class ids 0..20 or 255, got shape {labels.shape}, values {bad}"
        )
    return labels.astype(np.uint8)


def prepare_voc_aug(root: str, sbd_root: str) -> Tuple[int, int]:
    """Write ``VOC2012/SegmentationClassAug/<id>.png`` from SBD's ``dataset/cls/<id>.mat``
    (existing files are kept) and ``VOC2012/ImageSets/Segmentation/aug.txt``: the SBD train
    and val images in neither VOC's ``train.txt`` nor its ``val.txt``, as mmsegmentation's
    ``tools/dataset_converters/voc_aug.py``.

    Returns:
        the number of label maps written and of images in aug.txt.
    """
    voc_root, sbd = os.path.join(root, VOC_ROOT), os.path.join(sbd_root, "dataset")
    lists = [os.path.join(voc_root, "ImageSets", "Segmentation", f"{s}.txt") for s in ("train", "val")]
    lists += [os.path.join(sbd, f"{s}.txt") for s in ("train", "val")]
    for path in lists:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: expected VOC2012 (VOCtrainval_11-May-2012.tar) under {root} "
                f"and SBD's benchmark_RELEASE at {sbd_root}"
            )
    out_dir = os.path.join(voc_root, "SegmentationClassAug")
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for mat_file in sorted(glob.glob(os.path.join(sbd, "cls", "*.mat"))):
        target = os.path.join(out_dir, os.path.splitext(os.path.basename(mat_file))[0] + ".png")
        if not os.path.exists(target):
            labels = _sbd_label(mat_file)
            with atomic_path(target) as tmp:
                Image.fromarray(labels).save(tmp, format="PNG")
            written += 1
    voc_ids = set(_read_ids(lists[0]) + _read_ids(lists[1]))
    aug = sorted(set(_read_ids(lists[2]) + _read_ids(lists[3])) - voc_ids)
    aug_txt = os.path.join(voc_root, "ImageSets", "Segmentation", "aug.txt")
    atomic_write(aug_txt, lambda f: f.write("".join(f"{i}\n" for i in aug).encode()))
    logger.info(f"Wrote {written} label maps to {out_dir} and {len(aug)} image ids to aug.txt")
    return written, len(aug)
