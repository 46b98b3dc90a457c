"""Our configs and code run on a setuptools without ``pkg_resources`` (removed in setuptools 82),
which detectron2's ``model_zoo`` imports.

The whole suite runs with ``import pkg_resources`` failing (``tests/conftest.py``), so the
tests that build every COCO and Cityscapes config's model (``tests/modeling``) build them
without it. Here, every config file of ``configs/`` loads in a fresh process where it fails
too, and none of them imports ``detectron2.model_zoo``.
"""

import subprocess
import sys
import textwrap

import pytest

from .helpers import CONFIGS, REPO_ROOT, tool_env

LOAD_EVERY_CONFIG = textwrap.dedent(
    """
    import pathlib, sys
    sys.modules["pkg_resources"] = None  # "import pkg_resources" now raises ImportError
    from detectron2.config import LazyConfig

    paths = sorted(pathlib.Path(sys.argv[1]).rglob("*.py"))
    for path in paths:
        LazyConfig.load(str(path))
    assert "detectron2.model_zoo" not in sys.modules, "a config imported detectron2.model_zoo"
    print(f"loaded {len(paths)} configs")
    """
)


def test_every_config_loads_without_pkg_resources():
    result = subprocess.run(
        [sys.executable, "-c", LOAD_EVERY_CONFIG, str(CONFIGS)],
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"loaded {len(list(CONFIGS.rglob('*.py')))} configs"


def test_the_suite_runs_without_pkg_resources():
    with pytest.raises(ImportError):
        import pkg_resources  # noqa: F401
