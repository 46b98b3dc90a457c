"""Datasets: COCO-format loading with checks, and the builtin ``balloon_{train,val}``."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from . import builtin  # noqa: E402,F401  (registers the builtin datasets)
from .balloon import prepare_balloon, via_to_coco  # noqa: E402
from .coco import load_coco_instances, register_coco_instances  # noqa: E402
