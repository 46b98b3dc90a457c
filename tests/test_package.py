"""Packaging: what setup.py installs, and how gcnet behaves without detectron2."""
import ast
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

import gcnet

REPO_ROOT = Path(__file__).resolve().parents[1]

# Makes every import of detectron2 fail, as on a machine where it is not installed.
HIDE_DETECTRON2 = """
import sys

class HideDetectron2:
    def find_spec(self, name, path=None, target=None):
        if name == "detectron2" or name.startswith("detectron2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, HideDetectron2())
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


# What works without detectron2: the blocks, and the file helpers they share nothing with.
STANDALONE = ("layers", "utils", "_detectron2")


def detectron2_backed_packages():
    return sorted(f"gcnet.{m.name}" for m in pkgutil.iter_modules(gcnet.__path__) if m.name not in STANDALONE)


def test_layers_import_without_detectron2():
    code = HIDE_DETECTRON2 + (
        "import torch\n"
        "from gcnet.layers import ContextBlock\n"
        "assert ContextBlock(8, 0.5)(torch.ones(1, 8, 2, 2)).shape == (1, 8, 2, 2)\n"
        "assert not any(m.startswith('detectron2') for m in sys.modules)\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_detectron2_backed_packages_explain_what_is_missing():
    packages = detectron2_backed_packages()
    assert {"gcnet.modeling", "gcnet.export", "gcnet.analysis", "gcnet.apps"} <= set(packages)
    for package in packages:
        result = run_python(HIDE_DETECTRON2 + f"import {package}\n")
        assert result.returncode != 0, package
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith("ImportError: "), (package, last_line)
        assert f"{package} requires detectron2" in last_line
        assert "install it with `bash tools/install.sh` (README.md, Install)" in last_line


def test_wheel_contents_and_metadata(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("gcnet", "configs", "model_zoo"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gcnet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"gcnet/__init__.py", "gcnet/layers/context_block.py", "gcnet/layers/non_local.py"} <= names
    resources = "gcnet/model_zoo/resources/"
    assert {
        resources + "model_zoo/manifest.yaml",
        resources + "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py",
        resources + "configs/common/models/mask_rcnn_gcnet_fpn.py",
        resources + "configs/Cityscapes-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x1024_40k.py",
    } <= names
    assert not any(n.startswith(("tests/", "detectron2/")) for n in names)
    assert "Requires-Python: >=3.10" in metadata
    requirements = [
        Requirement(line.split(":", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    runtime = {r.name for r in requirements if r.marker is None}
    assert runtime == {
        "torch", "torchvision", "fvcore", "iopath", "omegaconf", "hydra-core", "pycocotools",
        "opencv-python-headless", "cityscapesscripts", "tqdm", "pyyaml",
    }  # fmt: skip
    assert "Provides-Extra: dev" in metadata
    assert {r.name for r in requirements if r.marker is not None} >= {"pytest", "onnxruntime"}


# How low each package of gcnet sits: a module imports only from packages below its own, or
# from its own package (layers <- modeling <- data <- evaluation/engine <- model_zoo <- apps <- tools).
LAYER_RANKS = {
    "_detectron2": 0, "utils": 0, "layers": 1, "modeling": 2, "solver": 2, "data": 3,
    "evaluation": 4, "engine": 4, "analysis": 4, "export": 4, "model_zoo": 5, "apps": 6,
}  # fmt: skip


def gcnet_imports(path: Path):
    """(imported gcnet package, whether the import is inside a function) for every import of
    gcnet in a module, relative ones resolved."""
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level] if node.level else []
            names = [".".join(base + ([node.module] if node.module else []))]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gcnet" and len(parts) > 1:
                yield parts[1], id(node) in nested


def test_imports_point_one_way():
    assert set(LAYER_RANKS) == {m.name for m in pkgutil.iter_modules(gcnet.__path__)}
    wrong = []
    for path in sorted((REPO_ROOT / "gcnet").rglob("*.py")):
        own = path.relative_to(REPO_ROOT).parts[1].removesuffix(".py")
        for imported, in_function in gcnet_imports(path):
            if imported == own:
                continue
            if LAYER_RANKS.get(imported, 99) >= LAYER_RANKS[own]:
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports gcnet.{imported}")
            if in_function:  # as if to dodge an import cycle
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports gcnet.{imported} inside a function")
    assert not wrong, wrong
