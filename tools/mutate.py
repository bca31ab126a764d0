"""A small mutation tester for the companion package (no dependency beyond the standard library).

For each module it lists every *mutation point* of its source (an AST node where a plausible
one-line bug can be made), draws a fixed, seeded sample of them, and for each mutant runs that
module's test files in a **copy** of the repository (the shared work tree is never modified):

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python tools/mutate.py gmm ddpm --n 20 --seed 0

Mutation operators (one per mutant):
  * arithmetic: ``+ <-> -``, ``* <-> /``, ``** -> *``, ``// -> /``;
  * comparison: ``< <-> <=``, ``> <-> >=``, ``== <-> !=``, ``< <-> >``;
  * constants: an int ``k -> k + 1``, a float ``c -> 2c`` (``0.0 -> 1.0``), ``True <-> False``;
  * a unary minus dropped, ``not`` dropped;
  * the first two positional arguments of a call swapped;
  * ``and <-> or``; a returned expression negated (``return e -> return -e``).
Docstrings, strings, f-strings, ``raise`` statements (error messages), ``__all__`` and
type annotations are never mutated. A mutant is *killed* if the tests fail (or time out), or
if it cannot even be imported; it *survives* if they pass. Writes a JSON summary with
``--out`` and prints each survivor (module, line, the mutated source line) to be judged.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ["gmm", "schedules", "metrics", "utils", "train", "data", "nets"]
CHAPTERS = ["ddpm", "sde", "ode", "unified"]

_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
          ast.Pow: ast.Mult, ast.FloorDiv: ast.Div}
_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq}


def _skip_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never to mutate: docstrings, raise statements, annotations, __all__."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            for n in ast.walk(node):
                skip.add(id(n))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                mark(a.annotation)
            for d in node.decorator_list:
                mark(d)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.Raise, ast.JoinedStr, ast.Assert)):
            mark(node)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
    return skip


def mutation_points(tree: ast.AST) -> list[tuple[int, str, int]]:
    """All (node index in ast.walk order, kind, lineno) where a mutant can be made."""
    skip = _skip_nodes(tree)
    pts = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            pts.append((i, "arith", line))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            pts.append((i, "cmp", line))
            if type(node.ops[0]) in (ast.Lt, ast.Gt):
                pts.append((i, "cmp_flip", line))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            pts.append((i, "const", line))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            pts.append((i, "unary", line))
        elif isinstance(node, ast.BoolOp):
            pts.append((i, "boolop", line))
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and not any(
                isinstance(a, ast.Starred) for a in node.args[:2]):
            pts.append((i, "swap_args", line))
        elif isinstance(node, ast.Return) and node.value is not None and not isinstance(
                node.value, (ast.Tuple, ast.Constant, ast.Dict, ast.List, ast.Lambda)):
            pts.append((i, "neg_return", line))
    return pts


def make_mutant(src: str, point: tuple[int, str, int]) -> str:
    tree = ast.parse(src)
    idx, kind, _ = point
    node = list(ast.walk(tree))[idx]
    if kind == "arith":
        node.op = _ARITH[type(node.op)]()
    elif kind == "cmp":
        node.ops = [_CMP[type(node.ops[0])]()]
    elif kind == "cmp_flip":
        node.ops = [ast.Gt() if isinstance(node.ops[0], ast.Lt) else ast.Lt()]
    elif kind == "const":
        v = node.value
        node.value = (not v) if isinstance(v, bool) else v + 1 if isinstance(v, int) else (2 * v if v else 1.0)
    elif kind == "unary":
        # replace the UnaryOp by its operand: find the parent
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, node.operand)
                elif isinstance(value, list):
                    for j, v in enumerate(value):
                        if v is node:
                            value[j] = node.operand
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "swap_args":
        node.args[0], node.args[1] = node.args[1], node.args[0]
    elif kind == "neg_return":
        node.value = ast.UnaryOp(op=ast.USub(), operand=node.value)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def tests_for(module: str, root: Path = ROOT, *, extra_tests: bool = True) -> list[str]:
    """The module's own test files, the property-based tests of the core and the API fuzz test
    (``extra_tests=False``: the module's own test files only, the fast unit tests)."""
    files = sorted(str(p.relative_to(root)) for p in (root / "tests").glob(f"test_{module}*.py"))
    extra = ["test_fuzz_api.py"] if extra_tests else []
    if extra_tests and module in ("gmm", "schedules", "ddpm", "sde", "ode", "metrics"):
        extra.append("test_properties.py")
    for f in extra:
        if (root / "tests" / f).exists():
            files.append(f"tests/{f}")
    return files


def run_tests(workdir: Path, files: list[str], timeout: float, pytest_args: tuple[str, ...] = ()) -> tuple[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            "-p", "no:randomly", *pytest_args, *files], cwd=workdir, env=env, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.time() - t0
    return ("survived" if r.returncode == 0 else "killed"), time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", default=CORE + CHAPTERS)
    ap.add_argument("--n", type=int, default=20, help="mutants per module (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=str, default="")
    ap.add_argument("--only", type=str, default="", help="JSON from a previous run: re-test its survivors only")
    ap.add_argument("--unit-only", action="store_true", help="the module's own test files only (no fuzz/property tests)")
    ap.add_argument("--deselect", action="append", default=[], help="a test node id to leave out (slow tests); repeatable")
    ap.add_argument("--src", type=str, default="", help="copy companion/ and tests/ from this directory (a frozen snapshot)")
    args = ap.parse_args()

    only = None
    if args.only:
        prev = json.loads(Path(args.only).read_text())
        only = {(s["module"], s["point"][0], s["point"][1]) for s in prev["survivors"]}
    src_root = Path(args.src) if args.src else ROOT
    work = Path(tempfile.mkdtemp(prefix="mutate_"))
    shutil.copytree(src_root / "companion", work / "companion")
    shutil.copytree(src_root / "tests", work / "tests")
    (work / "tools").mkdir()
    for f in ("pyproject.toml", "tools/fuzz_api.py"):
        shutil.copy(src_root / f, work / f)
    pytest_args = tuple(a for d in args.deselect for a in ("--deselect", d))
    summary: dict = {"seed": args.seed, "n": args.n, "modules": {}, "survivors": []}
    try:
        for m in args.modules:
            path = next((work / "companion").rglob(f"{m}.py"))  # the module in its layer folder
            src = path.read_text()  # the copy: source and tests from the same moment
            tree = ast.parse(src)
            pts = mutation_points(tree)
            rng = random.Random(f"{args.seed}:{m}")
            sample = sorted(rng.sample(pts, min(args.n, len(pts))))
            if only is not None:
                sample = [p for p in sample if (m, p[0], p[1]) in only]
            files = tests_for(m, work, extra_tests=not args.unit_only)
            base, base_t = run_tests(work, files, timeout=600, pytest_args=pytest_args)
            if base != "survived":
                print(f"{m}: the unmutated tests fail; skipped", flush=True)
                continue
            lines = src.splitlines()
            killed = 0
            for p in sample:
                try:
                    msrc = make_mutant(src, p)
                except Exception as e:  # pragma: no cover - an operator that cannot apply
                    print(f"  {m}:{p[2]} {p[1]}: not applicable ({e})")
                    continue
                path.write_text(msrc)
                try:
                    outcome, dt = run_tests(work, files, timeout=max(30.0, 4 * base_t), pytest_args=pytest_args)
                finally:
                    path.write_text(src)
                if outcome.startswith("killed"):
                    killed += 1
                else:
                    code = lines[p[2] - 1].strip() if 0 < p[2] <= len(lines) else ""
                    summary["survivors"].append({"module": m, "point": [p[0], p[1]], "line": p[2], "code": code})
                    print(f"  SURVIVED {m}:{p[2]} [{p[1]}] {code}", flush=True)
            n = len(sample)
            summary["modules"][m] = {"points": len(pts), "mutants": n, "killed": killed,
                                     "score": killed / n if n else None, "tests": files,
                                     "deselected": list(args.deselect)}
            print(f"{m}: {killed}/{n} killed ({len(pts)} mutation points)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tot_n = sum(v["mutants"] for v in summary["modules"].values())
    tot_k = sum(v["killed"] for v in summary["modules"].values())
    summary["total"] = {"mutants": tot_n, "killed": tot_k, "score": tot_k / tot_n if tot_n else None}
    print(f"TOTAL: {tot_k}/{tot_n} killed")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
