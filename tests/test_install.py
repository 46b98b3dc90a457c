"""``tools/install.sh``: a second run changes nothing, and a failing step is one line naming it
and what to do."""

import json
import os
import subprocess
from importlib import metadata

from .helpers import REPO_ROOT


def install(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "tools/install.sh", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=600,
    )


def installed_detectron2_source() -> str:
    """DETECTRON2_SOURCE as the installed detectron2 was built from (pip's direct_url.json)."""
    direct_url = json.loads(metadata.distribution("detectron2").read_text("direct_url.json") or "{}")
    url = direct_url.get("url", "")
    assert url, "detectron2 was not installed by tools/install.sh (no direct_url.json)"
    if url.startswith("file://"):
        return url[len("file://") :]
    return f"git+{url}@{direct_url['vcs_info']['commit_id']}"


def test_second_run_has_nothing_to_do():
    result = install("--check", env={"DETECTRON2_SOURCE": installed_detectron2_source()})
    assert result.returncode == 0, result.stdout + result.stderr
    kept = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith(("kept", "missing"))]
    assert kept == ["kept"] * 4, result.stdout


def test_failing_step_is_one_line(tmp_path):
    result = install(env={"PYTHON": "false"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        'install.sh: step "Python >= 3.10 with pip (false)" failed. '
        "Install Python 3.10 or newer with pip, or point PYTHON at one."
    )


def test_bad_detectron2_source_is_one_line(tmp_path):
    result = install(env={"DETECTRON2_SOURCE": str(tmp_path)})  # a folder without a project
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'install.sh: step "detectron2 from {tmp_path}" failed. detectron2 builds from source'), last
    assert "Set DETECTRON2_SOURCE to a local folder or archive to build offline." in last


def test_one_opencv_build_without_a_gui():
    """The headless OpenCV only: the GUI build (declared by mmcv-lite and mmengine) shares its
    cv2 folder and makes a demo without a display abort in Qt."""
    import re

    import cv2

    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    assert "opencv-python" not in names, (
        "opencv-python is installed beside opencv-python-headless: run tools/install.sh"
    )
    assert re.search(r"^\s*GUI:\s*NONE", cv2.getBuildInformation(), re.MULTILINE)
