"""COCO-format instance datasets, loaded with detectron2 after checks that name what is wrong.

detectron2's ``load_coco_json`` fails deep inside pycocotools on a file that is not COCO
JSON, reads images only when training reaches them, and drops degenerate polygons with a
count. :func:`load_coco_instances` checks the file and the images first, and logs every
annotation it skips or clips by its id.
"""
import json
import logging
import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils.file_io import PathManager

__all__ = ["load_coco_instances", "register_coco_instances", "check_annotation"]

logger = logging.getLogger(__name__)

COCO_KEYS = ("images", "annotations", "categories")
# Boxes of polygons through pixel centres may overshoot the image by half a pixel.
CLIP_TOLERANCE = 1.0


def _read_coco_json(json_file: str) -> dict:
    try:
        with PathManager.open(json_file, "r") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file} is not a COCO instances file: invalid JSON ({e})") from e
    missing = [k for k in COCO_KEYS if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(
            f"{json_file} is not a COCO instances file: expected lists under {list(COCO_KEYS)}, "
            f"missing or not a list: {missing}"
        )
    return data


def check_annotation(ann: dict, width: int, height: int) -> Optional[str]:
    """Why an annotation is unusable (None if it is usable): a box with no area inside the
    image, or a segmentation made only of degenerate polygons (fewer than 3 points)."""
    x, y, w, h = ann.get("bbox", (0, 0, 0, 0))
    if min(x + w, width) - max(x, 0) <= 0 or min(y + h, height) - max(y, 0) <= 0:
        return f"bbox {[x, y, w, h]} has no area inside the {width}x{height} image"
    segm = ann.get("segmentation")
    if isinstance(segm, list) and segm and not any(len(p) >= 6 and len(p) % 2 == 0 for p in segm):
        return "segmentation has no polygon with at least 3 points"
    return None


def load_coco_instances(json_file: str, image_root: str, dataset_name: str) -> List[Dict]:
    """detectron2 dataset dicts of a COCO instances file, after checking that the file is
    COCO JSON and that every image it lists exists under ``image_root``.

    Annotations whose box has no area inside the image, or whose polygons are all degenerate,
    are skipped; boxes are clipped to the image. Each skip, and each clip by more than
    :data:`CLIP_TOLERANCE` pixels, is logged with the annotation id.
    """
    data = _read_coco_json(json_file)
    missing = [
        im["file_name"]
        for im in data["images"]
        if not PathManager.isfile(os.path.join(image_root, im["file_name"]))
    ]
    if missing:
        raise FileNotFoundError(
            f"{json_file} lists {len(missing)} images missing under {image_root}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    skipped = {}
    for ann in data["annotations"]:
        reason = check_annotation(ann, *sizes.get(ann["image_id"], (0, 0)))
        if reason:
            skipped[ann["id"]] = reason
            logger.warning(f"{dataset_name}: skipping annotation id={ann['id']}: {reason}")

    dicts = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=["id"])
    for record in dicts:
        kept = []
        for obj in record["annotations"]:
            if obj["id"] in skipped:
                continue
            x, y, w, h = obj["bbox"]
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, record["width"]), min(y + h, record["height"])
            if max(x0 - x, y0 - y, x + w - x1, y + h - y1) > CLIP_TOLERANCE:
                logger.warning(
                    f"{dataset_name}: clipping annotation id={obj['id']}: bbox {[x, y, w, h]} "
                    f"reaches outside the {record['width']}x{record['height']} image"
                )
            obj["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            kept.append(obj)
        record["annotations"] = kept
    return dicts


def register_coco_instances(
    name: str, metadata: dict, json_file: str, image_root: str, *, how_to_create: str = ""
) -> None:
    """detectron2's ``register_coco_instances``, loading with :func:`load_coco_instances`.

    ``how_to_create`` completes the error raised when the files are missing.
    """

    def load():
        if not (PathManager.isfile(json_file) and PathManager.isdir(image_root)):
            raise FileNotFoundError(
                f"Dataset '{name}' not found: expected the annotations {json_file} and the "
                f"images under {image_root}/. {how_to_create}".strip()
            )
        return load_coco_instances(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )
