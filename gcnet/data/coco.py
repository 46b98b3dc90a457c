"""COCO-format instance datasets, read once and checked, as detectron2 dataset dicts.

detectron2's ``load_coco_json`` fails deep inside pycocotools on a file that is not COCO
JSON, reads images only when training reaches them, and drops degenerate polygons with a
count. :func:`load_coco_instances` reads the file once, checks it and its images first, logs
every annotation it skips or clips by its id, and returns the records ``load_coco_json`` makes
(with each annotation's ``id``), setting the same metadata.
"""

import collections
import json
import logging
import os
from typing import Dict, List, Optional

import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import log_first_n

__all__ = [
    "PLACEHOLDER_CATEGORIES",
    "check_annotation",
    "check_coco_files",
    "is_placeholder_category",
    "load_coco_instances",
    "register_checked_coco_instances",
    "without_placeholders",
]

logger = logging.getLogger(__name__)

COCO_KEYS = ("images", "annotations", "categories")
# Category entries that are not classes: labelme's label list and COCO export start with them
# (regions to ignore, and the background), whatever ids they get.
PLACEHOLDER_CATEGORIES = ("__ignore__", "_background_")
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


# The fields each entry must have, and their types.
_ID = (int, str)
_FIELDS = {
    "images": {"id": _ID, "file_name": str, "width": int, "height": int},
    "annotations": {"id": _ID, "image_id": _ID, "category_id": int, "bbox": list},
    "categories": {"id": int, "name": str},
}
_TYPE_NAMES = {_ID: "an integer or a string", str: "a string", int: "an integer", list: "a list [x, y, width, height]"}


def _field_problem(entry, fields: Dict[str, type]) -> Optional[str]:
    """What is wrong with one entry of a COCO section (None if nothing is)."""
    if not isinstance(entry, dict):
        return f"is {entry!r}, not an object"
    for name, kind in fields.items():
        value = entry.get(name)
        if name not in entry:
            return f"lacks {name!r}"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"has {name} {value!r}, expected {_TYPE_NAMES[kind]}"
    sizes = [entry[k] for k in ("width", "height") if k in fields]
    if any(v <= 0 for v in sizes):
        return f"has size {entry['width']}x{entry['height']}, expected positive integers"
    bbox = entry.get("bbox") if "bbox" in fields else [0] * 4
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return f"has bbox {bbox!r}, expected [x, y, width, height]"
    return None


def _check_fields(data: dict, json_file: str) -> None:
    """Every image, annotation and category has the fields detectron2 reads, of their types,
    and every annotation's image_id names a listed image."""
    for section, fields in _FIELDS.items():
        problems = [(i, e, _field_problem(e, fields)) for i, e in enumerate(data[section])]
        problems = [p for p in problems if p[2]]
        if problems:
            index, entry, problem = problems[0]
            more = f" (and {len(problems) - 1} more {section} have problems)" if len(problems) > 1 else ""
            ident = f" (id={entry.get('id')!r})" if isinstance(entry, dict) and "id" in entry else ""
            raise ValueError(f"{json_file}: {section}[{index}]{ident} {problem}{more}")
    image_ids = {im["id"] for im in data["images"]}
    orphans = [a for a in data["annotations"] if a["image_id"] not in image_ids]
    if orphans:
        raise ValueError(
            f"{json_file}: {len(orphans)} annotations refer to images that 'images' does not list, the first "
            f"annotation id={orphans[0]['id']!r} to image_id {orphans[0]['image_id']!r}"
        )


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


def _check_images(data: dict, json_file: str, image_root: str) -> None:
    missing = [
        im["file_name"] for im in data["images"] if not PathManager.isfile(os.path.join(image_root, im["file_name"]))
    ]
    if missing:
        raise FileNotFoundError(
            f"{json_file} lists {len(missing)} images missing under {image_root}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )


def is_placeholder_category(name) -> bool:
    """Whether a category's ``name`` is one of :data:`PLACEHOLDER_CATEGORIES` (in any case)."""
    return isinstance(name, str) and name.strip().lower() in PLACEHOLDER_CATEGORIES


def _category_ids(data: dict, json_file: str, dataset_name: str) -> Dict[int, int]:
    """COCO category id -> contiguous id, as detectron2's ``load_coco_json`` maps them but for
    :data:`PLACEHOLDER_CATEGORIES`, which are left out (with a warning naming them); also sets
    the dataset's ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``."""
    categories = sorted(data["categories"], key=lambda c: c["id"])
    placeholders = {c["id"]: c["name"] for c in categories if is_placeholder_category(c["name"])}
    classes = [c for c in categories if c["id"] not in placeholders]
    id_map = {c["id"]: i for i, c in enumerate(classes)}
    unknown = sorted({a["category_id"] for a in data["annotations"]} - set(id_map) - set(placeholders))
    if unknown:
        raise ValueError(f"{json_file}: annotations have category ids {unknown} that 'categories' does not list")
    if placeholders:
        count = sum(a["category_id"] in placeholders for a in data["annotations"])
        named = ", ".join(f"{name!r} (id {i})" for i, name in placeholders.items())
        message = (
            f"{dataset_name}: dropped the categories {named} of {json_file}, which are not classes, "
            f"and their {count} annotations"
        )
        log_first_n(logging.WARNING, message, n=1, name=__name__, key="message")
    metadata = MetadataCatalog.get(dataset_name)
    metadata.set(thing_classes=[c["name"] for c in classes], thing_dataset_id_to_contiguous_id=id_map)
    return id_map


def _annotation(ann: dict, id_map: Dict[int, int]) -> dict:
    """One annotation in detectron2's format: XYWH_ABS box, contiguous category id, polygons
    of at least 3 points or a compressed RLE, keypoints shifted to pixel centres."""
    obj = {k: ann[k] for k in ("iscrowd", "bbox", "keypoints", "id") if k in ann}
    obj.update(bbox_mode=BoxMode.XYWH_ABS, category_id=id_map[ann["category_id"]])
    segm = ann.get("segmentation")
    if isinstance(segm, dict):
        obj["segmentation"] = mask_util.frPyObjects(segm, *segm["size"]) if isinstance(segm["counts"], list) else segm
    elif segm:
        obj["segmentation"] = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
    if "keypoints" in obj:  # COCO's keypoints are pixel indices: +0.5 is the pixel's centre
        obj["keypoints"] = [v + 0.5 if i % 3 != 2 else v for i, v in enumerate(obj["keypoints"])]
    return obj


def _clip_box(obj: dict, record: dict, dataset_name: str) -> None:
    x, y, w, h = obj["bbox"]
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, record["width"]), min(y + h, record["height"])
    if max(x0 - x, y0 - y, x + w - x1, y + h - y1) > CLIP_TOLERANCE:
        logger.warning(
            f"{dataset_name}: clipping annotation id={obj['id']}: bbox {[x, y, w, h]} "
            f"reaches outside the {record['width']}x{record['height']} image"
        )
    obj["bbox"] = [x0, y0, x1 - x0, y1 - y0]


def load_coco_instances(json_file: str, image_root: str, dataset_name: str) -> List[Dict]:
    """detectron2 dataset dicts of a COCO instances file, after checking that the file is
    COCO JSON, that each of its entries has the fields detectron2 reads (by type, naming the
    first entry that does not), and that every image it lists exists under ``image_root``.

    Annotations whose box has no area inside the image, or whose polygons are all degenerate,
    are skipped; boxes are clipped to the image. Each skip, and each clip by more than
    :data:`CLIP_TOLERANCE` pixels, is logged with the annotation id.
    """
    data = _read_coco_json(json_file)
    _check_fields(data, json_file)
    _check_images(data, json_file, image_root)
    id_map = _category_ids(data, json_file, dataset_name)
    images = {im["id"]: im for im in data["images"]}
    per_image = collections.defaultdict(list)
    for ann in (a for a in data["annotations"] if a["category_id"] in id_map):
        image = images[ann["image_id"]]
        reason = check_annotation(ann, image["width"], image["height"])
        if reason:
            logger.warning(f"{dataset_name}: skipping annotation id={ann['id']}: {reason}")
        else:
            per_image[ann["image_id"]].append(ann)
    records = []
    for image_id, image in sorted(images.items()):
        record = dict(file_name=os.path.join(image_root, image["file_name"]), image_id=image_id)
        record.update(height=image["height"], width=image["width"])
        record["annotations"] = [_annotation(ann, id_map) for ann in per_image[image_id]]
        for obj in record["annotations"]:
            _clip_box(obj, record, dataset_name)
        records.append(record)
    instances = sum(len(record["annotations"]) for record in records)
    logger.info(f"{dataset_name}: {len(records)} images, {instances} instances")
    return records


def check_coco_files(name: str, json_file: str, image_root: str, how_to_create: str = "") -> None:
    """Raise a FileNotFoundError that names dataset ``name``'s missing annotation file or image
    folder, completed by ``how_to_create``."""
    if not (PathManager.isfile(json_file) and PathManager.isdir(image_root)):
        raise FileNotFoundError(
            f"Dataset '{name}' not found: expected the annotations {json_file} and the "
            f"images under {image_root}/. {how_to_create}".strip()
        )


def without_placeholders(data: dict) -> dict:
    """A COCO instances dict without its :data:`PLACEHOLDER_CATEGORIES` and their annotations."""
    dropped = {c["id"] for c in data["categories"] if isinstance(c, dict) and is_placeholder_category(c.get("name"))}

    def kept(entry, key):
        return not (isinstance(entry, dict) and entry.get(key) in dropped)

    categories = [c for c in data["categories"] if kept(c, "id")]
    return dict(data, categories=categories, annotations=[a for a in data["annotations"] if kept(a, "category_id")])


def register_checked_coco_instances(
    name: str,
    metadata: dict,
    json_file: str,
    image_root: str,
    *,
    how_to_create: str = "",
    evaluation_json_file: str = "",
) -> None:
    """Register ``name`` as detectron2's ``register_coco_instances`` does, loading with
    :func:`load_coco_instances`.

    ``how_to_create`` completes the error raised when the files are missing.
    ``evaluation_json_file``, the ground truth that detectron2's ``COCOEvaluator`` reads
    (the metadata's ``json_file``), is ``json_file`` unless given: for a file with
    :data:`PLACEHOLDER_CATEGORIES`, a copy without them (:func:`without_placeholders`).
    """

    def load():
        check_coco_files(name, json_file, image_root, how_to_create)
        return load_coco_instances(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=evaluation_json_file or json_file,
        image_root=image_root,
        evaluator_type="coco",
        how_to_create=how_to_create,
        **metadata,
    )
