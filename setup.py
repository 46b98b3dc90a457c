#!/usr/bin/env python
"""Installs the ``gcnet`` package. detectron2 is a prerequisite installed beforehand (README.md)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def get_model_zoo_resources() -> list:
    """The configs and the model zoo manifest, shipped inside ``gcnet.model_zoo`` (as
    detectron2 ships its configs) through links in gcnet/model_zoo/resources/."""
    resources = ROOT / "gcnet" / "model_zoo" / "resources"
    resources.mkdir(exist_ok=True)
    for name in ("configs", "model_zoo"):
        link = resources / name
        if not link.exists():
            link.symlink_to(Path("..", "..", "..", name), target_is_directory=True)
    return [
        str(path.relative_to(resources.parent))
        for pattern in ("configs/**/*.py", "configs/**/*.yaml", "configs/**/*.md", "model_zoo/*.yaml", "model_zoo/*.md")
        for path in resources.glob(pattern)
    ]


def get_version() -> str:
    init_py = (ROOT / "gcnet" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', init_py, re.M).group(1)


# mmcv-lite and mmengine (the upstream reference of the tests and benchmarks) require the GUI
# build opencv-python, which would share its cv2 folder with our opencv-python-headless (a
# headless demo then aborts in Qt): tools/install.sh installs them with --no-deps, and the
# extras list what else they need.
MMCV_DEPS = ["addict", "yapf", "rich", "termcolor", "matplotlib", "packaging", "Pillow"]

setup(
    name="gcnet",
    version=get_version(),
    description="GCNet (Global Context Networks) for detectron2, with a model zoo",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=("gcnet", "gcnet.*")),
    package_data={"gcnet.model_zoo": get_model_zoo_resources()},
    python_requires=">=3.10",
    install_requires=[
        # torch.compiler.set_stance (the attention maps of compiled models) is in torch 2.6
        "torch>=2.6",
        "torchvision>=0.21",
        # The same ranges as detectron2's own requirements, so that both install side by side.
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "omegaconf>=2.1,<2.4",
        "hydra-core>=1.1",
        "pycocotools>=2.0.2",
        "opencv-python-headless",
        "cityscapesscripts>=2.2",
        "tqdm",
        "pyyaml",
    ],
    extras_require={
        # tools/export_model.py --format onnx: the exporter and the check of its output
        "export": ["onnx", "onnxscript", "onnxruntime"],
        # gcnet.modeling.TimmBackbone: timm's ImageNet-pretrained GC networks (configs/*timm*)
        "timm": ["timm>=0.9"],
        # tools/prepare_datasets.py voc_aug: SBD's MATLAB label files
        "datasets": ["scipy"],
        # tools/benchmark.py: the reference implementations the GC block is timed against, with
        # mmcv-lite installed apart (`pip install --no-deps mmcv-lite mmengine`, see MMCV_DEPS)
        "benchmark": ["timm>=0.9", *MMCV_DEPS],
        # tools/web_demo.py: the page
        "demo": ["gradio>=6,<7"],
        # tools/submit.py: training and prediction jobs on SLURM
        "cluster": ["submitit>=1.5"],
        # the tests also check the Triton kernel (in Triton's interpreter, without a GPU), drive
        # the web demo in headless Chromium (Debian's chromium and chromium-driver, installed
        # apart), run the tutorial notebook in a Jupyter kernel and write checkpoints with
        # mmengine's real MessageHub and HistoryBuffer (mmcv-lite and mmengine installed apart,
        # see MMCV_DEPS)
        "dev": [
            "pytest>=7",
            "ruff==0.17.6",
            "onnx",
            "onnxscript",
            "onnxruntime",
            *MMCV_DEPS,
            "scipy",
            "timm>=0.9",
            "submitit>=1.5",
            "triton; platform_system == 'Linux'",
            "gradio>=6,<7",
            "selenium>=4.10",
            "nbclient>=0.10",
            "nbformat>=5",
            "ipykernel>=6",
            # selenium's trio: 0.35 declares a hypothesis plugin it no longer has, which stops
            # pytest wherever hypothesis is installed
            "trio<0.35",
        ],
    },
)
