"""Training pieces for detectron2 LazyConfigs: the trainer with its loss guard, atomic
checkpoints, and strict config overrides."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .checkpoint import GCNetCheckpointer  # noqa: E402
from .config import apply_overrides, config_keys  # noqa: E402
from .launch import launch  # noqa: E402
from .trainer import GCNetTrainer, LossGuard  # noqa: E402
