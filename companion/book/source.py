"""Show a companion function's algorithm next to the derivation it implements.

:func:`show_source` displays the code of a function without its docstring and its leading
input-validation block (:func:`algorithm_source`), collapsed under a line that links to the
function's API entry. The notebooks use it instead of copying code.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = ["show_source", "algorithm_source", "api_url"]


_CHECK_PREFIXES = ("check_", "_check", "require_", "validate", "_validate")


def _is_check_call(node: ast.AST | None) -> bool:
    """A call of a validation helper (``check_tensor(...)``, ``self._check_x(...)``, ...)."""
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(_is_check_call(e) for e in node.elts)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name.startswith(_CHECK_PREFIXES)


def _call_name(node: ast.AST) -> str:
    if not isinstance(node, ast.Call):
        return ""
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_validation(stmt: ast.stmt, params: set[str]) -> bool:
    """Input validation, safe to hide: a bare check-helper call, an ``if`` that only raises, or a
    parameter re-bound through a helper that receives it (``x = check_tensor("x", x)``,
    ``t = _step_index(s, t)``). An assignment that creates a new name is never hidden: the
    algorithm below may use it."""
    if isinstance(stmt, ast.Expr):
        return _is_check_call(stmt.value)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or targets[0].id not in params:
            return False
        value = stmt.value
        if not isinstance(value, ast.Call) or not (_is_check_call(value) or _call_name(value).startswith("_")):
            return False
        return targets[0].id in [a.id for a in value.args if isinstance(a, ast.Name)]
    if isinstance(stmt, ast.If):
        return all(isinstance(s, ast.Raise) or _is_validation(s, params) for s in stmt.body) and all(
            _is_validation(s, params) for s in stmt.orelse
        )
    return False


def _hidden_lines(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive) of a definition's docstring and of the validation
    statements at the top level of its body."""
    body = node.body
    spans = []
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        spans.append((first.lineno, first.end_lineno or first.lineno))
        body = body[1:]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        params = {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
        checks = [s for s in body if _is_validation(s, params)]
        if len(checks) < len(body):  # a function that only validates is kept whole
            spans += [(s.lineno, s.end_lineno or s.lineno) for s in checks]
    return spans


def algorithm_source(obj: Callable | type) -> tuple[str, int]:
    """The source of ``obj`` without docstrings and leading input validation.

    Returns ``(source, hidden)`` where ``hidden`` counts the removed lines. Functions, methods and
    classes (each method stripped the same way) are supported.
    """
    src = textwrap.dedent(inspect.getsource(obj))
    tree = ast.parse(src)
    spans: list[tuple[int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            spans += _hidden_lines(node)
    drop = {n for lo, hi in spans for n in range(lo, hi + 1)}
    lines = src.splitlines()
    kept, blank = [], False
    for n, line in enumerate(lines, start=1):
        if n in drop:
            continue
        if not line.strip():  # no runs of blank lines where a block was removed
            if blank:
                continue
            blank = True
        else:
            blank = False
        kept.append(line)
    hidden = sum(1 for n in drop if n <= len(lines) and lines[n - 1].strip())
    return "\n".join(kept).rstrip() + "\n", hidden


#: modules documented on another module's API page (the default page is the module in its layer
#: folder: companion.<layer>.<module>[.<part>] -> <module>)
_API_PAGE = {"companion.store": "experiments", "companion.experiments": "experiments",
             "companion.book.source": "report", "companion.book.report": "report"}


def _api_page(module: str) -> str:
    for prefix, page in _API_PAGE.items():
        if module == prefix or module.startswith(prefix + "."):
            return page
    parts = module.split(".")
    return parts[2] if parts[0] == "companion" and len(parts) >= 3 else "index"


def api_url(obj: Callable | type) -> str:
    """Relative address (from a chapter page) of ``obj`` on the API page of its module."""
    module = getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", "")
    page = _api_page(module)
    public = not any(part.startswith("_") and not part.startswith("__") for part in qualname.split("."))
    anchor = f"#{module}.{qualname}" if public and "__" not in qualname else ""
    return f"../book/api/{page}.html{anchor}"


def show_source(obj: Callable | type, *, full: bool = False) -> Any:
    """Display the algorithm of a companion function or class in a notebook.

    The docstring and the leading input-validation block are hidden (``full=True`` keeps
    them) and the code is collapsed under a one-line summary that links to the function's
    entry on the API page. Returns an ``IPython.display.Markdown`` object when IPython is
    available, else the source string. Notebooks use it to put the implementation next to the
    equation it implements, without copying code.
    """
    if full:
        src, hidden = inspect.getsource(obj), 0
    else:
        src, hidden = algorithm_source(obj)
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - IPython ships with the book's environment
        return src
    name = f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    what = "docstring and input checks hidden" if hidden else "complete"
    return Markdown(
        f"<details class=\"companion-source\">\n<summary>Source of <code>{name}</code> "
        f"({len(src.splitlines())} lines, {what}) · <a href=\"{api_url(obj)}\">documentation</a>"
        f"</summary>\n\n```python\n{src}```\n\n</details>\n"
    )
