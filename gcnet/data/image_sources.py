"""The images a prediction run reads, from what its ``--input`` names: image files, folders
(searched recursively), globs, text files of paths (one a line) or a COCO JSON (its
``images``), each with the image id its predictions are written under."""

import json
import os
from typing import List, NamedTuple, Optional, Sequence

from .image_io import list_images

__all__ = ["ImageRecord", "collect_images", "TEXT_LIST_EXTENSIONS"]

# A file of one of these extensions lists image paths, one a line (blank lines and lines that
# start with # are skipped).
TEXT_LIST_EXTENSIONS = (".txt", ".lst", ".list")
# How many of a COCO JSON's first images are looked for to tell a wrong --image-root.
_ROOT_PROBE = 16


class ImageRecord(NamedTuple):
    """An image to predict: ``image_id`` (the COCO JSON's id, else its position in the input,
    from 1), ``path`` (where it is read) and ``file_name`` (what the outputs call it: the COCO
    JSON's ``file_name``, else ``path``)."""

    image_id: int
    path: str
    file_name: str


def _resolve(path: str, root: str) -> str:
    path = os.path.expanduser(path)
    return path if "://" in path or os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def _text_list(spec: str, image_root: Optional[str]) -> List[str]:
    try:
        with open(spec, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except UnicodeDecodeError:
        raise ValueError(f"--input {spec}: not a text file of image paths (it is not UTF-8 text)") from None
    root = image_root or os.path.dirname(os.path.abspath(spec))
    paths = [_resolve(line, root) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise ValueError(f"--input {spec}: the file lists no image path (one a line)")
    return paths


def _coco_images(spec: str, image_root: Optional[str]) -> List[ImageRecord]:
    try:
        with open(spec, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--input {spec}: not a COCO JSON file ({e})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise ValueError(f"--input {spec}: not a COCO JSON file with images (no 'images' list, or an empty one)")
    records, seen = [], set()
    root = image_root or os.path.dirname(os.path.abspath(spec))
    for index, image in enumerate(images):
        ok = isinstance(image, dict) and type(image.get("id")) is int and isinstance(image.get("file_name"), str)
        if not ok:
            raise ValueError(
                f"--input {spec}: images[{index}] has no integer 'id' and string 'file_name': {image!r:.200}"
            )
        if image["id"] in seen:
            raise ValueError(f"--input {spec}: images[{index}] repeats the image id {image['id']}")
        seen.add(image["id"])
        records.append(ImageRecord(image["id"], _resolve(image["file_name"], root), image["file_name"]))
    probe = records[:_ROOT_PROBE]
    if not any("://" in r.path or os.path.isfile(r.path) for r in probe):
        raise ValueError(
            f"--input {spec}: none of its first {len(probe)} images is under {root} (the first: {probe[0].file_name}); "
            "give the folder its file_name values are relative to with --image-root"
        )
    return records


def collect_images(inputs: Sequence[str], image_root: Optional[str] = None) -> List[ImageRecord]:
    """The images ``inputs`` name, in order and without repeats, as :class:`ImageRecord`.

    Each input is an image file, a folder (its image files, recursively), a glob, a text file
    (:data:`TEXT_LIST_EXTENSIONS`) whose lines are image paths or URLs, or a ``.json`` COCO
    file, whose ``images`` keep their ids and ``file_name`` (which must then be the only
    input). Relative paths of a text file or COCO JSON are relative to ``image_root``, by
    default the folder of the file. Paths a text file lists are not checked here: one that
    cannot be read is reported by the run, which goes on without it.

    Raises:
        ValueError: naming the input, when it names nothing, is not what its extension says,
            or a COCO JSON comes with other inputs or its images are not under the root.
    """
    if not inputs:
        raise ValueError("--input is required: image files, folders, globs, text files of paths or a COCO JSON")
    coco = [spec for spec in inputs if spec.lower().endswith(".json")]
    if coco and len(inputs) > 1:
        raise ValueError(f"--input {coco[0]}: a COCO JSON gives its own image ids, and must be the only input")
    if coco:
        if not os.path.isfile(coco[0]):
            raise ValueError(f"--input {coco[0]}: no such file")
        return _coco_images(coco[0], image_root)
    paths: List[str] = []
    for spec in inputs:
        if spec.lower().endswith(TEXT_LIST_EXTENSIONS) and os.path.isfile(spec):
            paths += _text_list(spec, image_root)
        else:
            paths += [path for path, _ in list_images([spec])]
    unique = list(dict.fromkeys(p if "://" in p else os.path.abspath(p) for p in paths))
    return [ImageRecord(index, path, path) for index, path in enumerate(unique, start=1)]
