"""Where the datasets live: ``$DETECTRON2_DATASETS``, else ``./datasets`` (detectron2's rule)."""

import os

__all__ = ["datasets_root", "datasets_root_hint"]


def datasets_root() -> str:
    """The datasets folder, as the environment says now."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def datasets_root_hint() -> str:
    """How :func:`datasets_root` was chosen, for error messages."""
    return f"DETECTRON2_DATASETS={os.environ.get('DETECTRON2_DATASETS', '<unset>, so ./datasets')}"
