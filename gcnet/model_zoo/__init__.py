"""GCNet checkpoints by name: the manifest, the ``gcnet://`` path handler (verified downloads
through :mod:`gcnet.utils.download_cache`), converters from the upstream releases, and the
``get``/``get_config`` API."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from detectron2.utils.file_io import PathManager  # noqa: E402

from .api import get, get_checkpoint_url, get_config, list_models  # noqa: E402
from .convert import convert_checkpoint  # noqa: E402
from .converters import CONVERTERS, UnconvertedKeysError  # noqa: E402
from .fit import checkpoint_mismatches  # noqa: E402
from .handler import (  # noqa: E402
    GCNetHandler,
    convert_upstream_file,
    load_upstream_checkpoint,
    save_checkpoint,
)
from .manifest import CheckpointSource, Manifest, UpstreamRule, ZooModel, load_manifest, resource_path  # noqa: E402

PathManager.register_handler(GCNetHandler())
