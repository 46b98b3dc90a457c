"""Your own COCO-format instance dataset, registered from a LazyConfig.

A config names the files; the dataset is registered when the config is instantiated, so that
command-line overrides of the files take effect (``configs/quick_schedules/
mask_rcnn_R_50_FPN_gc_r16_finetune.py``, README "Train on your own dataset")::

    dataloader.train.dataset.names = L(register_custom_dataset)(
        name="my_dataset_train", json_file="my_data/train.json", image_root="my_data/images")
    model.roi_heads.num_classes = L(custom_dataset_num_classes)(json_file="my_data/train.json")

Category ids need not start at 1 nor be contiguous: they are mapped to 0..K-1 in id order (as
detectron2's ``load_coco_json`` does) and back for evaluation.
"""
import functools
import json
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco import register_checked_coco_instances

__all__ = ["register_custom_dataset", "custom_dataset_num_classes", "read_categories"]

# name -> (json_file, image_root) of the datasets registered here.
_REGISTERED: Dict[str, Tuple[str, str]] = {}


@functools.lru_cache(maxsize=8)
def _read_categories(json_file: str, mtime: float) -> Tuple[Tuple[int, str], ...]:
    try:
        with open(json_file) as f:
            categories = json.load(f).get("categories")
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
    return tuple(pairs)


def read_categories(json_file: str) -> List[Tuple[int, str]]:
    """(id, name) of the categories of a COCO instances file, in id order."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file}: no such COCO annotation file")
    return list(_read_categories(os.path.abspath(json_file), os.path.getmtime(json_file)))


def custom_dataset_num_classes(json_file: str) -> int:
    """The number of categories of a COCO instances file: a model's ``num_classes``."""
    return len(read_categories(json_file))


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
    register_checked_coco_instances(name, metadata, json_file, image_root)
    _REGISTERED[name] = files
    return name
