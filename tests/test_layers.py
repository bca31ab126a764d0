"""The package's layers: every import points down, none runs back up, and no module is looked up by
name at call time.

Order (a module may import its own folder and the folders before it): ``core`` → ``store`` →
``diffusion`` | ``sequence`` (siblings: neither imports the other) → ``recipes`` → ``experiments`` →
``book``. The top-level ``companion/__init__.py`` is the facade that re-exports the public names; no
module inside a layer imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "companion"
RANK = {"_version": 0, "core": 0, "store": 1, "diffusion": 2, "sequence": 2, "recipes": 3, "experiments": 4, "book": 5}
SIBLINGS = {frozenset({"diffusion", "sequence"})}
MODULES = sorted(p for p in PKG.rglob("*.py") if p != PKG / "__init__.py")


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _package(path: Path) -> list[str]:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def imported_modules(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every ``companion`` module ``path`` imports, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "companion"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path)
                if path.name == "__init__.py":
                    base = list(path.relative_to(PKG.parent).parent.parts)
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "companion":
                continue
            if node.module is None or mod == "companion":  # ``from .. import x``: x may be a module
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def imported_from(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, package) of every ``from <package> import names`` whose names may be attributes."""
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom) and (node.module is None or node.module == "companion"):
            base = list(path.relative_to(PKG.parent).with_suffix("").parts)
            base = base[: len(base) - node.level] if node.level else ["companion"]
            out.append((node.lineno, ".".join(base)))
    return out


def _target_layer(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1:
        return None  # the facade itself
    return parts[1] if parts[1] in RANK else None


def test_the_layer_folders_are_the_ones_documented():
    assert {_layer(p) for p in MODULES} == set(RANK)


def _exists(name: str, attr_ok: bool) -> bool:
    """Whether ``name`` is a module of the package (``attr_ok``: or ``name`` is ``pkg.attr``, from
    ``from pkg import attr``, and ``pkg`` is one)."""
    for n in (name, name.rsplit(".", 1)[0]) if attr_ok else (name,):
        base = PKG.parent.joinpath(*n.split("."))
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def check_imports(path: Path, source: str | None = None) -> None:
    own = _layer(path)
    for line, name in imported_modules(path, source):
        target = _target_layer(name)
        where = f"{path.relative_to(PKG)}:{line} imports {name}"
        assert _exists(name, attr_ok=name.rsplit(".", 1)[0] in {m for _, m in imported_from(path, source)}), (
            f"{where}: no such module")
        assert target is not None, f"{where}: a layer module may not import the facade `companion` or an unknown place"
        assert RANK[target] <= RANK[own], f"{where}: {target} is above {own}"
        assert target == own or frozenset({own, target}) not in SIBLINGS, f"{where}: {own} and {target} are siblings"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path):
    check_imports(path)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_is_imported_by_name_at_call_time(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            assert name not in {"import_module", "__import__"}, (
                f"{path.relative_to(PKG)}:{node.lineno} imports a module by name")


def test_the_check_sees_an_upward_import():
    """The check itself: an import from a lower layer up, relative or absolute, or across siblings,
    or of the facade, is caught; a downward one passes."""
    core, diffusion = PKG / "core" / "probe.py", PKG / "diffusion" / "probe.py"
    for path, src in ((core, "from ..diffusion import ode\n"),
                      (core, "def f():\n    from ..diffusion.ode import sample_heun\n"),
                      (core, "import companion.recipes.denoiser\n"), (core, "from .. import ddpm\n"),
                      (diffusion, "from ..sequence import gau\n"), (diffusion, "from ..diffusion.core import utils\n"), (diffusion, "from ..store import load_weights\n"
                                                                         "from ..book import plot\n")):
        with pytest.raises(AssertionError):
            check_imports(path, src)
    check_imports(diffusion, "from ..core.gmm import lab_2d\nfrom . import ode\nfrom ..store import read_result\n")


def test_old_module_names_still_import():
    import importlib

    import companion

    for short, layer in companion.MODULES.items():
        assert importlib.import_module(f"companion.{short}") is importlib.import_module(f"companion.{layer}.{short}")


def test_every_converter_an_error_names_is_in_precond():
    """The kind errors name converters; each one is a function of :mod:`companion.diffusion.precond`."""
    import importlib

    from companion.core.utils import CONVERTERS

    for text in CONVERTERS.values():
        path = text.split("(")[0]
        module, name = path.rsplit(".", 1)
        mod = importlib.import_module(module)
        assert mod.__name__ == "companion.diffusion.precond", text
        assert callable(getattr(mod, name)), text
