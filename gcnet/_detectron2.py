"""The import guard of gcnet's detectron2-backed packages.

``gcnet.layers`` needs PyTorch alone. Every other package of gcnet builds on detectron2, which
is not on PyPI, and calls :func:`require_detectron2` before importing it.
"""
import importlib



def require_detectron2(package: str) -> None:
    """Raise an ImportError that names ``package`` and how to install detectron2 when it
    cannot be imported."""
    try:
        importlib.import_module("detectron2")
    except ImportError as e:
        raise ImportError(
            f"{package} requires detectron2, which is not installed or fails to import ({e}). "
            "detectron2 is on no package registry: install it with `bash tools/install.sh` "
            "(README.md, Install); gcnet.layers works without it."
        ) from e
