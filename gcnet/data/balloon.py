"""The balloon instance-segmentation set of detectron2's tutorial (one class, 61 train and
13 val images), converted from its VIA annotations to COCO JSON."""

import json
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from typing import Dict, Optional, Tuple
from urllib.parse import urlparse

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from gcnet.utils.download import download_file

__all__ = ["BALLOON_URL", "via_to_coco", "check_balloon", "prepare_balloon"]

logger = logging.getLogger(__name__)

BALLOON_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip"
SPLITS = ("train", "val")


def via_to_coco(via_json: str, image_dir: str, split: str) -> Dict:
    """A VIA ``via_region_data.json`` as a COCO instances dict, as detectron2's tutorial reads
    it: polygon vertices shifted by +0.5 px to pixel centres, image ids 1..N in file-name
    order, ``file_name`` relative to ``image_dir``, box and area from the polygon."""
    with open(via_json) as f:
        entries = sorted(json.load(f).values(), key=lambda e: e["filename"])
    images, annotations = [], []
    for image_id, entry in enumerate(entries, start=1):
        with Image.open(os.path.join(image_dir, entry["filename"])) as im:
            width, height = im.size
        images.append(dict(id=image_id, file_name=entry["filename"], width=width, height=height))
        regions = entry["regions"]
        for region in regions.values() if isinstance(regions, dict) else regions:
            shape = region["shape_attributes"]
            xs = np.asarray(shape["all_points_x"], dtype=np.float64) + 0.5
            ys = np.asarray(shape["all_points_y"], dtype=np.float64) + 0.5
            polygon = np.stack([xs, ys], axis=1).ravel().tolist()
            rle = mask_util.merge(mask_util.frPyObjects([polygon], height, width))
            x0, y0 = float(xs.min()), float(ys.min())
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=1,
                    segmentation=[polygon],
                    area=float(mask_util.area(rle)),
                    bbox=[x0, y0, float(xs.max()) - x0, float(ys.max()) - y0],
                    iscrowd=0,
                )
            )
    return dict(
        info=dict(description=f"balloon {split}, converted from VIA {os.path.basename(via_json)}"),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=1, name="balloon", supercategory="balloon")],
    )


ARCHIVE_WAY_OUT = (
    "download balloon_dataset.zip again (on a machine without network access: elsewhere, then run "
    "python tools/prepare_datasets.py balloon --url /path/to/balloon_dataset.zip)"
)


def _find_release_root(folder: str, archive: str) -> str:
    """The folder of the extracted release that holds train/ and val/."""
    for dirpath, _, _ in os.walk(folder):
        if "__MACOSX" in dirpath:
            continue
        if all(os.path.isfile(os.path.join(dirpath, s, "via_region_data.json")) for s in SPLITS):
            return dirpath
    raise ValueError(
        f"{archive} is not the balloon release: it has no train/ and val/ folders with via_region_data.json"
    )


def _local_archive(url: str) -> Optional[str]:
    """The local archive that ``url`` names; None for an http(s) URL to download it from."""
    if urlparse(url).scheme in ("http", "https"):
        return None
    local = url[len("file://") :] if url.startswith("file://") else url
    if not os.path.isfile(local):
        raise FileNotFoundError(f"{url}: no such file (expected balloon_dataset.zip, or the URL to download it from)")
    return local


def _download_release(url: str, staging: str) -> str:
    way_out = (
        "Without network access, download balloon_dataset.zip elsewhere and run: "
        "python tools/prepare_datasets.py balloon --url /path/to/balloon_dataset.zip"
    )
    return download_file(url, os.path.join(staging, "balloon_dataset.zip"), way_out=way_out).path


def _extract(archive: str, staging: str) -> None:
    """Unpack the zip ``archive`` into ``staging``; a file that is not one, or is truncated or
    corrupt, raises a ValueError that names it."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ValueError(f"{archive} is not a complete zip archive ({e}); {ARCHIVE_WAY_OUT}") from None


def _split_problem(folder: str, split: str) -> Tuple[Optional[str], int]:
    """What is wrong with one split of a prepared balloon ``folder`` (None if nothing), and
    its number of images."""
    json_file = os.path.join(folder, "annotations", f"balloon_instances_{split}.json")
    try:
        with open(json_file) as f:
            images = json.load(f)["images"]
        names = [image["file_name"] for image in images]
    except FileNotFoundError:
        return f"{json_file} is missing", 0
    except (ValueError, KeyError, TypeError) as e:
        return f"{json_file} is not a COCO annotation file ({type(e).__name__}: {e})", 0
    paths = [os.path.join(folder, split, name) for name in names]
    missing = [path for path in paths if not os.path.isfile(path) or not os.path.getsize(path)]
    if missing:
        return f"{len(missing)} of its {len(paths)} {split} images are missing or empty, e.g. {missing[0]}", 0
    return None, len(paths)


def check_balloon(folder: str) -> str:
    """Check a prepared balloon ``folder``: both splits' annotations parse and every image they
    list is there. Returns what it holds ("61 train and 13 val images").

    Raises:
        ValueError: naming what is wrong with a partial or corrupt folder, and the fix.
    """
    counts = []
    for split in SPLITS:
        problem, count = _split_problem(folder, split)
        if problem:
            raise ValueError(
                f"{folder} is incomplete: {problem}; remove it and run `python tools/prepare_datasets.py balloon` again"
            )
        counts.append(f"{count} {split}")
    return f"{' and '.join(counts)} images"


def _converted_split(archive: str, folder: str, split: str) -> Dict:
    try:
        return via_to_coco(os.path.join(folder, "via_region_data.json"), folder, split)
    except (OSError, ValueError, KeyError, TypeError) as e:  # what a damaged JSON file or image raises
        problem = f"{type(e).__name__}: {e}" if isinstance(e, (KeyError, TypeError)) else str(e).replace(folder, split)
        message = f"{archive}: cannot convert {split}/via_region_data.json ({problem}); {ARCHIVE_WAY_OUT}"
        raise ValueError(message) from None


def prepare_balloon(root: str, url: str = BALLOON_URL) -> str:
    """Build ``root``/balloon from the balloon release at ``url`` (a URL, or the path of a
    local copy of balloon_dataset.zip): ``train/``, ``val/`` and COCO annotations under
    ``annotations/``. The folder appears only once complete; an existing one is checked
    (:func:`check_balloon`) and never touched.

    Raises:
        ValueError: ``root``/balloon exists but is incomplete, or the archive is not a
            complete zip of the balloon release (nothing is written then).
        FileNotFoundError: a local archive ``url`` does not exist.
        DownloadError: the download failed (the message says how to work offline).
    """
    target = os.path.join(root, "balloon")
    if os.path.exists(target):
        logger.info(f"{target} is already prepared ({check_balloon(target)}); left as it is")
        return target
    local = _local_archive(url)
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".balloon-", dir=root)
    try:
        archive = local or _download_release(url, staging)
        _extract(archive, staging)
        release = _find_release_root(staging, archive)
        built = os.path.join(staging, "balloon-prepared")
        os.makedirs(os.path.join(built, "annotations"))
        for split in SPLITS:
            shutil.move(os.path.join(release, split), os.path.join(built, split))
            coco = _converted_split(archive, os.path.join(built, split), split)
            with open(os.path.join(built, "annotations", f"balloon_instances_{split}.json"), "w") as f:
                json.dump(coco, f)
            logger.info(f"balloon {split}: {len(coco['images'])} images, {len(coco['annotations'])} instances")
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
