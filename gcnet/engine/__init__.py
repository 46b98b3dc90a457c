"""Training and inference pieces for detectron2 LazyConfigs: the trainer with its loss guard,
atomic checkpoints, strict config overrides, and the predictor."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .checkpoint import GCNetCheckpointer  # noqa: E402
from .config import apply_overrides, config_keys, default_device, load_config  # noqa: E402
from .hooks import BestCheckpointer, GuardedPeriodicCheckpointer, PeriodicCheckpointer  # noqa: E402
from .launch import launch  # noqa: E402
from .predictor import Predictor, TestPreprocessor  # noqa: E402
from .trainer import GCNetTrainer, LossGuard  # noqa: E402
