"""Your own COCO-format instance dataset, registered from a LazyConfig.

A config names the files; the dataset is registered when the config is instantiated, so that
command-line overrides of the files take effect (``configs/quick_schedules/
mask_rcnn_R_50_FPN_gc_r16_finetune.py``, README "Train on your own dataset")::

    dataloader.train.dataset.names = L(register_custom_dataset)(
        name="my_dataset_train", json_file="my_data/train.json", image_root="my_data/images")
    model.roi_heads.num_classes = L(custom_dataset_num_classes)(json_file="my_data/train.json")

Category ids need not start at 1 nor be contiguous: they are mapped to 0..K-1 in id order (as
detectron2's ``load_coco_json`` does) and back for evaluation. Category entries that are not
classes (labelme's ``__ignore__`` and ``_background_``, :data:`gcnet.data.coco.PLACEHOLDER_CATEGORIES`)
are left out, with their annotations.
"""

import collections
import functools
import json
import logging
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from gcnet.utils.download import sha256sum
from gcnet.utils.download_cache import cache_root
from gcnet.utils.file_io import atomic_write

from .coco import is_placeholder_category, register_checked_coco_instances, without_placeholders

__all__ = ["register_custom_dataset", "custom_dataset_num_classes", "read_categories"]

logger = logging.getLogger(__name__)

# name -> (json_file, image_root) of the datasets registered here.
_REGISTERED: Dict[str, Tuple[str, str]] = {}
# The most classes named in a warning.
MAX_NAMED = 10


@functools.lru_cache(maxsize=8)
def _read_categories(json_file: str, mtime: float) -> Tuple[Tuple[Tuple[int, str], ...], Dict[int, int]]:
    """(id, name) of every category in id order, and the number of annotations of each id."""
    try:
        with open(json_file) as f:
            data = json.load(f)
        categories, annotations = data.get("categories"), data.get("annotations", [])
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{json_file} is not a COCO instances file ({e})") from None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{json_file} is not a COCO instances file: expected a non-empty list under 'categories'")
    try:
        pairs = sorted((int(c["id"]), str(c["name"])) for c in categories)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{json_file}: every category needs an integer 'id' and a 'name' ({e!r})") from None
    if len({i for i, _ in pairs}) != len(pairs):
        raise ValueError(f"{json_file}: category ids repeat: {[i for i, _ in pairs]}")
    counts = collections.Counter(a.get("category_id") for a in annotations if isinstance(a, dict))
    return tuple(pairs), dict(counts)


def _file_categories(json_file: str) -> Tuple[Tuple[Tuple[int, str], ...], Dict[int, int]]:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file}: no such COCO annotation file")
    return _read_categories(os.path.abspath(json_file), os.path.getmtime(json_file))


def read_categories(json_file: str) -> List[Tuple[int, str]]:
    """(id, name) of the classes of a COCO instances file, in id order: its categories but
    for the placeholders (:func:`gcnet.data.coco.is_placeholder_category`)."""
    categories = _file_categories(json_file)[0]
    classes = [(i, name) for i, name in categories if not is_placeholder_category(name)]
    if not classes:
        raise ValueError(f"{json_file}: none of its categories is a class ({', '.join(n for _, n in categories)})")
    return classes


def custom_dataset_num_classes(json_file: str) -> int:
    """The number of classes of a COCO instances training file (:func:`read_categories`): a
    model's ``num_classes``. Classes without any annotation in the file are named in a
    warning: the model gets an output for each, which it never learns."""
    classes = read_categories(json_file)
    counts = _file_categories(json_file)[1]
    unseen = [f"{name!r} (id {i})" for i, name in classes if not counts.get(i)]
    if unseen:
        more = f" and {len(unseen) - MAX_NAMED} more" if len(unseen) > MAX_NAMED else ""
        logger.warning(
            f"{json_file}: {len(unseen)} of its {len(classes)} classes have no annotation: "
            f"{', '.join(unseen[:MAX_NAMED])}{more}; the model has an output for each, never trained"
        )
    return len(classes)


def _copy_without_placeholders(json_file: str) -> str:
    """A copy of ``json_file`` without its placeholder categories, in gcnet's cache (named by
    the file's sha256, written once): the ground truth that evaluation reads."""
    stem = os.path.splitext(os.path.basename(json_file))[0]
    copy = os.path.join(cache_root(), "coco_without_placeholders", f"{stem}-{sha256sum(json_file)[:16]}.json")
    if not os.path.isfile(copy):
        with open(json_file) as f:
            data = without_placeholders(json.load(f))
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        atomic_write(copy, lambda f: f.write(json.dumps(data).encode()))
    return copy


def register_custom_dataset(name: str, json_file: str, image_root: str) -> str:
    """Register the COCO instances file ``json_file`` with its images under ``image_root`` as
    dataset ``name`` (class names and the category id mapping in its metadata), and return
    ``name``. Registering the same files again does nothing; other files under a name this
    function registered replace them.

    Raises:
        FileNotFoundError: the file or the folder is missing.
        ValueError: ``name`` is a dataset registered elsewhere (a builtin one), or the file
            has no valid categories.
    """
    files = (os.path.abspath(json_file), os.path.abspath(image_root))
    if _REGISTERED.get(name) == files:
        return name
    if name in DatasetCatalog.list() and name not in _REGISTERED:
        raise ValueError(f"Dataset name '{name}' is taken by another registered dataset; choose another name")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Dataset '{name}': the image folder {image_root} does not exist")
    categories = read_categories(json_file)
    if name in _REGISTERED:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    metadata = {
        "thing_classes": [category for _, category in categories],
        "thing_dataset_id_to_contiguous_id": {i: k for k, (i, _) in enumerate(categories)},
    }
    has_placeholders = len(_file_categories(json_file)[0]) > len(categories)
    evaluation_json_file = _copy_without_placeholders(json_file) if has_placeholders else ""
    register_checked_coco_instances(name, metadata, json_file, image_root, evaluation_json_file=evaluation_json_file)
    _REGISTERED[name] = files
    return name
