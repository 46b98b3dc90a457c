"""Packaging: what setup.py installs, and how gcnet behaves without detectron2."""

import ast
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

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
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


# What works without detectron2: the blocks, the file helpers they share nothing with, and the
# learning-rate schedule (fvcore's).
STANDALONE = ("layers", "utils", "_detectron2", "solver")


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
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
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
        "torch",
        "torchvision",
        "fvcore",
        "iopath",
        "omegaconf",
        "hydra-core",
        "pycocotools",
        "opencv-python-headless",
        "cityscapesscripts",
        "tqdm",
        "pyyaml",
    }
    assert "Provides-Extra: dev" in metadata
    assert {r.name for r in requirements if r.marker is not None} >= {"pytest", "onnxruntime"}


# How low each package of gcnet sits: a module imports only from packages below its own, or
# from its own package (layers <- modeling <- data <- evaluation/engine <- model_zoo <- apps <- tools).
LAYER_RANKS = {
    "_detectron2": 0,
    "utils": 0,
    "layers": 1,
    "modeling": 2,
    "solver": 2,
    "data": 3,
    "evaluation": 4,
    "engine": 4,
    "analysis": 4,
    "export": 4,
    "model_zoo": 5,
    "apps": 6,
}


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


# The code whose imports form one graph: gcnet's modules, and each folder of scripts with the
# modules beside them (a script's folder is the first entry of its sys.path).
CODE = ("gcnet", "tools", "projects")


def script_root(path: Path, repo: Path) -> Path:
    """The folder an import in ``path`` resolves against: the repository for gcnet's modules, the
    script's folder for tools/*.py, the project's folder for projects/<name>/**."""
    parts = path.relative_to(repo).parts
    if parts[0] == "projects" and len(parts) > 2:
        return repo / "projects" / parts[1]
    return repo if parts[0] == "gcnet" else path.parent


def module_file(name: str, roots) -> Optional[Path]:
    """The file of the module or package ``name`` (dotted) under the first of ``roots`` that
    has it; None for a module from elsewhere (torch, detectron2, ...)."""
    for root in roots:
        base = root.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def imported_files(path: Path, repo: Path):
    """The files of the code that ``path`` imports, anywhere in it (at module level or in a
    function: an import deferred into a function still depends on its module): for ``import
    a.b`` the module a.b; for ``from a import b``, the module a.b, or a where b is a name in it."""
    root = script_root(path, repo)
    roots = [root, repo] if root != repo else [repo]
    package = list(path.relative_to(root).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parents = package[: len(package) - node.level] if node.level else []
            base = ".".join(parents + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if module_file(f"{base}.{a.name}", roots) else base for a in node.names]
        else:
            continue
        for name in names:
            found = module_file(name, roots)
            if found is not None and found != path:
                yield found


def import_cycles(repo: Path, folders=CODE):
    """Every cycle of the module import graph of the code in ``folders`` (each found once, as
    the list of its files, starting from the smallest)."""
    files = sorted(p for folder in folders for p in (repo / folder).rglob("*.py"))
    graph = {p: sorted(set(imported_files(p, repo))) for p in files}
    cycles, done = set(), set()

    def visit(node, stack, on_stack):
        for target in graph.get(node, ()):
            if target in on_stack:
                cycle = stack[stack.index(target) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(str(p.relative_to(repo)) for p in cycle[start:] + cycle[:start]))
            elif target not in done:
                visit(target, stack + [target], on_stack | {target})
        done.add(node)

    for start in files:
        if start not in done:
            visit(start, [start], {start})
    return sorted(cycles)


def test_no_import_cycle_between_modules():
    assert import_cycles(REPO_ROOT) == []


def test_import_cycles_are_found(tmp_path):
    """The check finds cycles through relative imports, imports inside functions, packages'
    __init__ and scripts importing their neighbours, and nothing in a one-way chain."""
    files = {
        "gcnet/__init__.py": "",
        "gcnet/a/__init__.py": "from .x import f\n",
        "gcnet/a/x.py": "def f():\n    from . import y\n",
        "gcnet/a/y.py": "from gcnet.a.x import f\nimport torch\n",
        "gcnet/b.py": "from gcnet import a\n",
        "tools/one.py": "import two\nimport gcnet.b\n",
        "tools/two.py": "from one import main\n",
        "projects/P/run.py": "import pkg.m\n",
        "projects/P/pkg/__init__.py": "from .m import g\nHELPER = 1\n",
        "projects/P/pkg/m.py": "from pkg import HELPER\n\ndef g():\n    pass\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_cycles(tmp_path) == [
        ("gcnet/a/x.py", "gcnet/a/y.py"),
        ("projects/P/pkg/__init__.py", "projects/P/pkg/m.py"),
        ("tools/one.py", "tools/two.py"),
    ]


def test_no_test_imports_a_script():
    """Scripts (tools/*.py, a project's script) are tested by running them, as a user does: no
    test loads a file as a module (code given to a subprocess is a string, not a call)."""
    loaders = {"spec_from_file_location", "run_path", "run_module", "SourceFileLoader", "load_module", "load_tool"}
    found = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in loaders:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert found == []
