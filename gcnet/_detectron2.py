"""The import guard of gcnet's detectron2-backed packages.

``gcnet.layers`` needs PyTorch alone. Every other package of gcnet builds on detectron2, which
is not on PyPI, and calls :func:`require_detectron2` before importing it.
"""

import importlib
import warnings

# Modules of fvcore and detectron2 that call torch.jit.script when imported, which PyTorch
# (>= 2.9) answers with a FutureWarning, "`torch.jit.script` is deprecated", twice, that says
# nothing to gcnet's users: imported here, once, with that warning ignored (nowhere else).
SCRIPTING_AT_IMPORT = ("fvcore.nn", "detectron2.modeling")


def require_detectron2(package: str) -> None:
    """Raise an ImportError that names ``package`` and how to install detectron2 when it
    cannot be imported; import :data:`SCRIPTING_AT_IMPORT` without their deprecation
    warnings."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            for module in ("detectron2",) + SCRIPTING_AT_IMPORT:
                importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{package} requires detectron2, which is not installed or fails to import ({e}). "
            "detectron2 is on no package registry: install it with `bash tools/install.sh` "
            "(README.md, Install); gcnet.layers works without it."
        ) from e
