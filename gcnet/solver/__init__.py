"""Learning-rate schedules for detectron2's training loop."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .lr_scheduler import PolyParamScheduler  # noqa: E402
