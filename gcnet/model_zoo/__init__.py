"""Checkpoints by name: the ``gcnet://`` path handler, verified downloads and converters."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from detectron2.utils.file_io import PathManager  # noqa: E402

from .converters import CONVERTERS, UnconvertedKeysError, convert_torchvision_resnet  # noqa: E402
from .download import cache_root, download_verified  # noqa: E402
from .handler import GCNetHandler, load_upstream_checkpoint  # noqa: E402
from .imagenet import IMAGENET_MODELS, CheckpointSource  # noqa: E402

PathManager.register_handler(GCNetHandler())
