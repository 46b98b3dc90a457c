"""Evaluators: Cityscapes semantic segmentation with the official cityscapesscripts, and the
semantic segmentation metrics of mmsegmentation."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .cityscapes import CityscapesPixelLevelEvaluator  # noqa: E402
from .sem_seg import MMSegSemSegEvaluator, iou_metrics  # noqa: E402
