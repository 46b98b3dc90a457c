import importlib.abc
import logging
import socket
import sys
from pathlib import Path

import pytest

from .helpers import find_test_data


class _NoPkgResources(importlib.abc.MetaPathFinder):
    """setuptools 82 removed ``pkg_resources``, which detectron2's ``model_zoo`` imports: every
    test runs as on such a setuptools, so that nothing of ours comes to depend on it. (A finder,
    not ``sys.modules["pkg_resources"] = None``: pytest looks that key up itself.)"""

    def find_spec(self, name, path=None, target=None):
        if name == "pkg_resources" or name.startswith("pkg_resources."):
            raise ModuleNotFoundError(f"No module named {name!r} (as on setuptools >= 82)", name=name)
        return None


sys.modules.pop("pkg_resources", None)
sys.meta_path.insert(0, _NoPkgResources())


@pytest.fixture
def free_port() -> int:
    """A free TCP port on loopback, for torch.distributed rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(session, config, items):
    """Stop at collection, with one line, when a collected test needs the real test data and
    there is none."""
    if any("shared_data" in getattr(item, "fixturenames", ()) for item in items):
        try:
            find_test_data()
        except FileNotFoundError as e:
            pytest.exit(str(e), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session", autouse=True)
def calibration_file(tmp_path_factory) -> Path:
    """The choices of "auto" inference options (gcnet.engine.calibration) in a file of this
    session's, not in the user's cache; tools run as subprocesses inherit it."""
    import os

    path = tmp_path_factory.mktemp("calibration") / "calibration.json"
    previous = os.environ.get("GCNET_CALIBRATION_FILE")
    os.environ["GCNET_CALIBRATION_FILE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GCNET_CALIBRATION_FILE", None)
    else:
        os.environ["GCNET_CALIBRATION_FILE"] = previous


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets and photos of the tests (``find_test_data``; never copied into the
    repository)."""
    return find_test_data()


@pytest.fixture
def datasets_root(shared_data, tmp_path) -> Path:
    """A $DETECTRON2_DATASETS folder whose balloon/ is the shared balloon set."""
    root = tmp_path / "datasets"
    root.mkdir()
    (root / "balloon").symlink_to(shared_data / "balloon", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def gc_resnet18():
    """A GC-ResNet-18 (GC r4 in res3-res5, BN) in eval mode whose GC blocks act (random weights)."""
    import torch

    from gcnet.modeling import build_gcnet_resnet

    from .helpers import randomize_

    torch.manual_seed(0)
    model = build_gcnet_resnet(18, norm="BN", context="gc", gc=dict(ratio=1 / 4))
    return randomize_(model, scale=0.1).eval()


@pytest.fixture(autouse=True)
def isolated_loggers():
    """Tools called in-process set up loggers (detectron2's ``setup_logger``) whose handlers
    write to this test's captured output; put the loggers back as they were afterwards."""
    names = ("gcnet", "fvcore", "detectron2")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
        for n in names
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
