"""The import guard of gcnet's detectron2-backed packages.

``gcnet.layers`` needs PyTorch alone. Every other package of gcnet builds on detectron2, which
is not on PyPI, and calls :func:`require_detectron2` before importing it.
"""
import importlib

DETECTRON2_INSTALL_GUIDE = "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"


def require_detectron2(package: str) -> None:
    """Raise an ImportError that names ``package`` and detectron2's install guide when
    detectron2 cannot be imported."""
    try:
        importlib.import_module("detectron2")
    except ImportError as e:
        raise ImportError(
            f"{package} requires detectron2, which is not installed or fails to import ({e}). "
            f"detectron2 is not on PyPI: install it following {DETECTRON2_INSTALL_GUIDE} "
            "(gcnet.layers works without it)."
        ) from e
