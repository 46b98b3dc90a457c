"""gcnet uses the public APIs of torch, detectron2, fvcore, iopath, omegaconf and Triton: no
private attribute (a leading underscore) of theirs is read, written, overridden or imported in
any package of gcnet. Underscored names that their libraries document as public count as
public: detectron2's ROI heads' ``_init_*`` / ``_forward_*`` methods (extension points that its
own projects override), the methods an iopath ``PathHandler`` implements for its protocol,
LazyConfig's ``_target_`` key and the methods of named tuples."""

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

from .helpers import REPO_ROOT

GCNET = REPO_ROOT / "gcnet"
CHECKED = tuple(sorted(p.name for p in GCNET.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()))
# detectron2's ROI heads: the methods that subclasses are meant to override.
EXTENSION_POINTS = re.compile(r"^_(init|forward)_\w+$")
# What iopath's PathHandler documents as the methods a handler of a protocol implements.
IOPATH_HANDLER_METHODS = {"_get_supported_prefixes", "_get_local_path", "_open", "_exists", "_isfile", "_isdir", "_ls"}
# Underscored names that are public: LazyConfig's key of the callable, named tuples' methods.
PUBLIC_UNDERSCORED = {"_target_", "_replace", "_asdict", "_fields", "_make"}
# The private methods still overridden, each where detectron2 has no public way to the same
# (the module's docstring says so): (class, method).
KNOWN_OVERRIDES = {("MultiMaskCascadeROIHeads", "_match_and_label_boxes")}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def checked_files():
    for name in CHECKED:
        path = GCNET / name
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def names_defined_in(paths) -> Set[str]:
    """Every name that gcnet's own code defines: functions, classes, assigned names and
    attributes (``self._x = ...``)."""
    defined = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                defined.add(node.asname)
    return defined


def private_uses(path: Path, ours: Set[str]) -> Iterator[str]:
    """Private attributes of other code read, written or imported in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in ours | PUBLIC_UNDERSCORED:
            yield f"{where} .{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] != "gcnet":
            hidden = [p for p in node.module.split(".") if private(p)] + [a.name for a in node.names if private(a.name)]
            yield from (f"{where} {node.module}: {name}" for name in hidden)
        elif isinstance(node, ast.Import):
            yield from (f"{where} {a.name}" for a in node.names if any(private(p) for p in a.name.split(".")))


def test_no_private_attribute_of_other_code_is_used():
    ours = names_defined_in(GCNET.rglob("*.py"))
    uses = [use for path in checked_files() for use in private_uses(path, ours)]
    assert uses == []


def external_private_names(cls: type) -> Dict[str, str]:
    """The private names of the classes from other libraries in ``cls``'s MRO: their private
    methods and the private attributes their code reads or sets (name -> class)."""
    names: Dict[str, str] = {}
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in ("gcnet", "builtins", "abc", "typing"):
            continue
        names.update((name, base.__qualname__) for name in vars(base) if private(name))
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names.update((name, base.__qualname__) for name in re.findall(r"\bself\.(_[a-z]\w*)", source))
    return names


def gcnet_classes() -> Iterator[type]:
    for path in checked_files():
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        yield from (c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__)


def assigned(node: ast.AST):
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def own_names(cls: type) -> Set[str]:
    """What the source of ``cls`` defines: its methods and class attributes, and the attributes
    its code sets on ``self``."""
    (body,) = ast.parse(inspect.cleandoc("\n" + inspect.getsource(cls))).body
    names = {n.name for n in body.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assignments = (ast.Assign, ast.AnnAssign, ast.AugAssign)
    names |= {t.id for n in body.body if isinstance(n, assignments) for t in assigned(n) if isinstance(t, ast.Name)}
    targets = [t for n in ast.walk(body) if isinstance(n, assignments) for t in assigned(n)]
    return names | {t.attr for t in targets if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self"}


def private_overrides() -> Iterator[Tuple[str, str, str]]:
    for cls in gcnet_classes():
        external = external_private_names(cls)
        for name in sorted(own_names(cls) & set(external)):
            handler_method = external[name] == "PathHandler" and name in IOPATH_HANDLER_METHODS
            if not (EXTENSION_POINTS.match(name) or handler_method) and (cls.__name__, name) not in KNOWN_OVERRIDES:
                yield cls.__name__, name, external[name]


def test_no_private_attribute_of_a_base_class_is_overridden_or_set():
    assert list(private_overrides()) == []


@pytest.mark.parametrize("cls_name,method", sorted(KNOWN_OVERRIDES))
def test_the_known_overrides_still_override_a_base_method(cls_name, method):
    """Fails when detectron2 renames or drops the method, so that the override is looked at."""
    (cls,) = [c for c in gcnet_classes() if c.__name__ == cls_name]
    (base,) = [b for b in cls.__mro__[1:] if method in vars(b)][:1]
    assert method in vars(cls) and base.__module__.startswith("detectron2.")
    ours, theirs = (inspect.signature(inspect.unwrap(vars(c)[method])) for c in (cls, base))
    assert list(ours.parameters) == list(theirs.parameters)
