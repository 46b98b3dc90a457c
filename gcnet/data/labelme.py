"""labelme annotations (one JSON file beside each image) converted to one COCO instances file.

Polygons, rectangles and circles become instance polygons; shapes with the same label and
``group_id`` become one instance of several polygons. Lines, points and other shapes have no
area and are skipped, each with a warning naming its file. Shapes labelled with labelme's
placeholders ``__ignore__`` and ``_background_`` (:data:`gcnet.data.coco.PLACEHOLDER_CATEGORIES`)
are not instances of a class and are dropped, with one warning that counts them. An image
whose labelme file has no shape is kept as an image without annotations; images without a
labelme file are left out.
"""

import collections
import json
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_util

from gcnet.utils.file_io import atomic_write

from .coco import is_placeholder_category

__all__ = ["labelme_to_coco", "write_labelme_coco"]

logger = logging.getLogger(__name__)

CIRCLE_POINTS = 32


def _polygon(shape: Dict, where: str) -> Optional[List[float]]:
    """The flat [x0, y0, x1, y1, ...] polygon of a labelme shape, None for a shape without area."""
    kind = shape.get("shape_type") or "polygon"
    points = np.asarray(shape.get("points", []), dtype=np.float64).reshape(-1, 2)
    if kind == "polygon" and len(points) >= 3:
        return points.ravel().tolist()
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    if kind == "circle" and len(points) == 2:
        center, radius = points[0], float(np.linalg.norm(points[1] - points[0]))
        angles = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
        return (
            np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], axis=1)
            .ravel()
            .tolist()
        )
    logger.warning(
        f"{where}: skipped a '{kind}' shape labelled {shape.get('label')!r} with {len(points)} points (no area)"
    )
    return None


def _read_labelme(path: str) -> Optional[Dict]:
    """A labelme file's content; None for a JSON file that is not one (e.g. a COCO file)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not (isinstance(data, dict) and isinstance(data.get("shapes"), list) and data.get("imagePath")):
        return None
    return data


def _instances(data: Dict, where: str) -> List[Tuple[str, List[List[float]]]]:
    """(label, polygons) of each instance of a labelme file."""
    grouped: "OrderedDict[tuple, Tuple[str, List]]" = OrderedDict()
    for index, shape in enumerate(data["shapes"]):
        polygon = _polygon(shape, where)
        if polygon is None:
            continue
        label = str(shape.get("label", "")).strip()
        if not label:
            raise ValueError(f"{where}: shape {index} has no label")
        group = shape.get("group_id")
        key = (label, group) if group is not None else (label, None, index)
        grouped.setdefault(key, (label, []))[1].append(polygon)
    return list(grouped.values())


def _without_placeholders(records: List[tuple], folder: str) -> List[tuple]:
    """``records`` without the instances labelled as placeholders, with a warning that names
    and counts them."""
    labels = [label for *_, instances in records for label, _ in instances]
    dropped = collections.Counter(label for label in labels if is_placeholder_category(label))
    if dropped:
        named = ", ".join(f"{count} labelled {label!r}" for label, count in sorted(dropped.items()))
        logger.warning(f"{folder}: dropped {sum(dropped.values())} shapes that are not instances of a class ({named})")
    return [
        (*fields, [(label, polygons) for label, polygons in instances if not is_placeholder_category(label)])
        for *fields, instances in records
    ]


def write_labelme_coco(folder: str, output: str, *, overwrite: bool = False) -> Dict:
    """Write :func:`labelme_to_coco` of ``folder`` to ``output`` atomically and return it.

    Raises:
        ValueError: ``folder`` is not a folder, ``output`` exists and ``overwrite`` is False,
            or :func:`labelme_to_coco` fails (naming the file).
    """
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    if os.path.exists(output) and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    coco = labelme_to_coco(folder)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    atomic_write(output, lambda f: f.write(json.dumps(coco).encode()))
    return coco


def labelme_to_coco(folder: str) -> Dict:
    """A COCO instances dict of the labelme files under ``folder`` (searched recursively), with
    ``file_name`` relative to ``folder`` and categories numbered 1..K in label order.

    Raises:
        ValueError: naming the file, when the folder has no labelme file, a labelme file's
            image is missing, or a shape has no label.
    """
    records = []
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(f for f in files if f.lower().endswith(".json")):
            path = os.path.join(root, name)
            data = _read_labelme(path)
            if data is None:
                continue
            image = os.path.normpath(os.path.join(root, data["imagePath"]))
            if not os.path.isfile(image):
                raise ValueError(f"{path}: its image {data['imagePath']} is not at {image}")
            records.append(
                (
                    os.path.relpath(image, folder),
                    int(data["imageWidth"]),
                    int(data["imageHeight"]),
                    _instances(data, path),
                )
            )
    if not records:
        raise ValueError(f"{folder}: no labelme file (a .json file with 'shapes' and 'imagePath') in the folder")
    records = _without_placeholders(records, folder)
    labels = sorted({label for *_, instances in records for label, _ in instances})
    category_ids = {label: i for i, label in enumerate(labels, start=1)}
    images, annotations = [], []
    for image_id, (file_name, width, height, instances) in enumerate(records, start=1):
        images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
        for label, polygons in instances:
            rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
            points = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=category_ids[label],
                    segmentation=polygons,
                    area=float(mask_util.area(rle)),
                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    iscrowd=0,
                )
            )
    categories = [dict(id=i, name=label, supercategory=label) for label, i in category_ids.items()]
    return dict(images=images, annotations=annotations, categories=categories)
