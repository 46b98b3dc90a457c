"""Evaluators: Cityscapes semantic segmentation with the official cityscapesscripts."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .cityscapes import CityscapesPixelLevelEvaluator  # noqa: E402
