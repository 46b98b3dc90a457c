#!/usr/bin/env bash
# Installs gcnet and what it needs into the active Python (a virtual environment is best):
# a torch/torchvision pair built for each other, detectron2 built from source at a pinned
# commit, gcnet with its `dev` extra (the test tools) and one OpenCV build (headless), and
# Debian's Chromium with its driver (the web demo's browser test). Steps already done are
# kept, so a second run changes nothing.
#
#   bash tools/install.sh            # install what is missing
#   bash tools/install.sh --check    # only say what is missing (exit 1 if anything is)
#
# Environment:
#   PYTHON             the interpreter to install into (default: python3)
#   DETECTRON2_SOURCE  detectron2's source: a git URL (pinned commit appended unless it has
#                      @ref), a folder or a source archive (default: the official repository)
#   TORCH_PIP_ARGS     extra pip arguments for torch, e.g. "--index-url https://download.pytorch.org/whl/cu121"
set -Eeuo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
DETECTRON2_COMMIT=02b5c4e295e990042a714712c21dc79b731e8833
DETECTRON2_SOURCE="${DETECTRON2_SOURCE:-https://github.com/facebookresearch/detectron2.git}"
NO_DEPS_PACKAGES="mmcv-lite mmengine"
CHECK_ONLY=0 MISSING=0 STEP="" HINT=""
[ "${1:-}" = "--check" ] && CHECK_ONLY=1
trap 'echo "install.sh: step \"$STEP\" failed. $HINT" >&2' ERR

step() { STEP="$1" HINT="$2"; echo "==> $STEP"; }
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check --progress-bar off "$@"; }
# Run an install command, or with --check only report it.
install() {
    if [ "$CHECK_ONLY" = 1 ]; then echo "missing: $STEP"; MISSING=1; else "$@"; fi
}
install_torch() {
    # shellcheck disable=SC2086  # TORCH_PIP_ARGS is a list of arguments
    pip_install torch torchvision ${TORCH_PIP_ARGS:-}
    torchvision_works
}
install_browser() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium chromium-driver
}
install_detectron2() {
    pip_install --no-build-isolation "$1"
    "$PYTHON" -c "from detectron2 import _C"
}
torchvision_works() {
    "$PYTHON" -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)" 2>/dev/null
}
# Whether the installed detectron2 was built from source $1 (pip's direct_url.json: the same
# archive by its sha256, wherever it lies now; the same folder; the same git commit) and its
# compiled ops load with the installed torch.
detectron2_built_from() {
    "$PYTHON" - "$1" 2>/dev/null <<'PY'
import hashlib, json, os, sys
from importlib import metadata
from detectron2 import _C  # noqa: F401  (fails when built against another torch)

spec = sys.argv[1]
installed = json.loads(metadata.distribution("detectron2").read_text("direct_url.json") or "{}")
if os.path.isfile(spec):
    with open(spec, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    sys.exit(installed.get("archive_info", {}).get("hashes", {}).get("sha256") != digest)
if os.path.exists(spec):
    sys.exit(installed.get("url") != "file://" + os.path.realpath(spec))
url, _, ref = spec[len("git+"):].rpartition("@")
commit = installed.get("vcs_info", {}).get("commit_id", "")
sys.exit(not (installed.get("url") == url and commit.startswith(ref)))
PY
}
# gcnet with its dev extra, then mmcv-lite and mmengine without their dependencies: they declare
# the GUI build opencv-python, which would share the cv2 folder with opencv-python-headless
# (the one OpenCV build we want: no display needed). setup.py lists the rest of what they need.
install_gcnet() {
    pip_install --no-build-isolation -e ".[dev]"
    # shellcheck disable=SC2086  # a list of names
    pip_install --no-deps $NO_DEPS_PACKAGES
    if "$PYTHON" -m pip show -q opencv-python 2>/dev/null; then
        # Removing opencv-python deletes the cv2 files the headless build shares with it.
        "$PYTHON" -m pip uninstall -y -q opencv-python
        pip_install --force-reinstall --no-deps "opencv-python-headless==$("$PYTHON" -m pip show opencv-python-headless | sed -n 's/^Version: //p')"
    fi
}
# Whether gcnet is installed in editable mode from this checkout, after setup.py last changed,
# with every requirement of it and of its dev extra met, and opencv-python absent.
gcnet_installed_here() {
    # shellcheck disable=SC2086  # a list of names
    "$PYTHON" - $NO_DEPS_PACKAGES 2>/dev/null <<'PY'
import json, os, sys
from importlib import metadata
from packaging.requirements import Requirement

here = os.path.realpath(".")
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != here]  # not the checkout's gcnet.egg-info
dist = metadata.distribution("gcnet")
installed = json.loads(dist.read_text("direct_url.json") or "{}")
metadata_file = dist.locate_file(f"gcnet-{dist.version}.dist-info/METADATA")
if installed.get("url") != "file://" + here or os.path.getmtime("setup.py") > os.path.getmtime(metadata_file):
    sys.exit(1)
for line in dist.requires or []:
    requirement = Requirement(line)
    if requirement.marker and not requirement.marker.evaluate({"extra": "dev"}):
        continue
    if not requirement.specifier.contains(metadata.version(requirement.name), prereleases=True):
        sys.exit(1)
for name in sys.argv[1:]:
    metadata.version(name)  # installed without dependencies
try:
    metadata.version("opencv-python")
except metadata.PackageNotFoundError:
    sys.exit(0)
sys.exit(1)
PY
}

step "Python >= 3.10 with pip ($PYTHON)" "Install Python 3.10 or newer with pip, or point PYTHON at one."
"$PYTHON" -c "import sys; assert sys.version_info >= (3, 10), sys.version"
"$PYTHON" -m pip --version

step "torch and torchvision built for each other" \
    "Install a matching pair yourself (https://pytorch.org/get-started/locally/), or set TORCH_PIP_ARGS, then run this again."
if torchvision_works; then
    echo "kept: $("$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
else
    install install_torch
fi

step "detectron2 from $DETECTRON2_SOURCE" \
    "detectron2 builds from source: it needs a C++ compiler and the Python headers (Debian/Ubuntu: apt-get install g++ python3-dev), and git for a git URL. Set DETECTRON2_SOURCE to a local folder or archive to build offline."
if [ -e "$DETECTRON2_SOURCE" ]; then
    source_spec="$DETECTRON2_SOURCE"
else
    source_spec="git+${DETECTRON2_SOURCE#git+}"
    [[ "${source_spec##*/}" == *@* ]] || source_spec="$source_spec@$DETECTRON2_COMMIT"
fi
if detectron2_built_from "$source_spec"; then
    echo "kept: detectron2 built from this source, with its compiled ops"
else
    install install_detectron2 "$source_spec"
fi

step "gcnet with its dev extra, and one OpenCV build (headless)" "Read pip's message above; the dev extra's packages come from PyPI."
if gcnet_installed_here; then
    echo "kept: gcnet installed from this checkout, with every requirement of setup.py met"
else
    install install_gcnet
fi

step "Chromium and its driver, for the web demo's browser test" \
    "Install Debian's (or Ubuntu's) chromium and chromium-driver packages as root, then run this again."
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "kept: $(chromium --version 2>/dev/null)"
else
    install install_browser
fi
[ "$CHECK_ONLY" = 1 ] && exit "$MISSING"

step "check" "Something installed above does not import; run this again, or see README.md (Install)."
"$PYTHON" -c "import detectron2, gcnet.engine, gcnet.model_zoo, torch; print('gcnet', gcnet.__version__, 'detectron2', detectron2.__version__, 'torch', torch.__version__)"
echo "Installed. Run the tests with: python -m pytest tests"
