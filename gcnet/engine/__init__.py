"""Training and inference pieces for detectron2 LazyConfigs: the trainer with its loss guard,
atomic checkpoints, strict config overrides, and the predictor."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .checkpoint import CheckpointMismatchError, GCNetCheckpointer  # noqa: E402
from .config import INFERENCE_KEYS, TRAINING_KEYS, apply_overrides, config_keys, default_device, load_config  # noqa: E402
from .faults import checkpoint_state, exit_on_bad_input, exit_on_stop  # noqa: E402
from .hooks import BestCheckpointer, EvalHook, GuardedPeriodicCheckpointer, PeriodicCheckpointer  # noqa: E402
from .inference import InferenceOptions, InferenceSetup, prepare_for_inference  # noqa: E402
from .interruption import Interrupted, interrupted, stop_on_signals  # noqa: E402
from .launch import RendezvousError, WorkerFailed, launch, launch_from_args  # noqa: E402
from .predictor import Predictor, TestPreprocessor  # noqa: E402
from .trainer import GCNetTrainer, LossGuard  # noqa: E402
