"""Finding image files, reading any common image as the 8-bit array a detectron2 model takes,
and writing drawn images."""

import glob
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager

from gcnet.utils.file_io import atomic_write
from gcnet.utils.local_files import local_file

__all__ = ["read_image", "write_image", "list_images", "IMAGE_EXTENSIONS", "ImageNamingMapper", "UnreadableImageError"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

# PIL modes of 16-bit (and 32-bit integer) grayscale files, mapped to 8 bits by value / 257.
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class UnreadableImageError(ValueError):
    """A dataset image that cannot be decoded; the message names its file."""


class ImageNamingMapper:
    """A dataset mapper (detectron2's ``DatasetMapper`` or any other) whose failure on a record
    names the record's image: detectron2 decodes images only when training reaches them, and
    PIL's errors ("image file is truncated") do not say which file."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, record: dict):
        try:
            return self.mapper(record)
        except (OSError, SyntaxError, ValueError) as e:  # what PIL and OpenCV raise on broken files
            raise UnreadableImageError(f"Cannot use {record.get('file_name', record)}: {e}") from e


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 array in ``format`` ("BGR" or "RGB").

    Applies the EXIF orientation. Grayscale, palette, RGBA/LA (alpha dropped), CMYK and 16-bit
    grayscale files (scaled from 0..65535 to 0..255) all become 3-channel 8-bit images.

    Raises:
        ValueError: naming ``path``, when it is not a readable image (missing, truncated,
            corrupt or of an unknown format).
        DownloadError: an http(s) ``path`` could not be downloaded.
    """
    local = local_file(path, PathManager) if "://" in path else path
    try:
        with Image.open(local) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad files
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    return np.ascontiguousarray(convert_PIL_to_numpy(image, format))


def write_image(path: str, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image in the format of ``path``'s extension, atomically:
    an existing file is only ever replaced by a complete one."""
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot write images of this format")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(encoded.tobytes()))


def list_images(inputs: Sequence[str]) -> List[Tuple[str, str]]:
    """The image files that ``inputs`` name, as (path, name) pairs in order, without repeats.

    Each input is a file, a folder (its image files, recursively, by extension) or a glob
    (``~`` expanded). ``name`` is where the image's output goes: the file name, or the path
    below the folder for an image found in a folder.

    Raises:
        ValueError: naming the input, when one names no existing file, no folder with images,
            or a glob that matches nothing.
    """
    found: Dict[str, str] = {}
    for spec in inputs:
        path = os.path.expanduser(spec)
        if os.path.isdir(path):
            matches = [
                (os.path.join(root, f), os.path.relpath(os.path.join(root, f), path))
                for root, _, files in sorted(os.walk(path))
                for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
            if not matches:
                raise ValueError(f"--input {spec}: the folder has no image files ({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.isfile(path):
            matches = [(path, os.path.basename(path))]
        else:
            matches = [(p, os.path.basename(p)) for p in sorted(glob.glob(path, recursive=True)) if os.path.isfile(p)]
            if not matches:
                raise ValueError(f"--input {spec}: no such file or folder, and no file matches it as a glob")
        for file, name in matches:
            found.setdefault(os.path.abspath(file), name)
    return [(path, name) for path, name in found.items()]
