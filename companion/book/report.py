"""Putting computed numbers into the book's prose and tables.

``glue`` hands a value to myst-nb, so the prose can show it with
``{glue:text}`name:.3f``` instead of a hand-typed copy; outside a book build (plain
Jupyter, Colab without myst-nb) it only returns the value. ``md_table`` renders rows of
numbers as a Markdown table, so results print as tables and not as monospace text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["glue", "md_table", "fmt"]


def glue(name: str, value: Any, *, display: bool = False) -> Any:
    """Register ``value`` under ``name`` for ``{glue:text}`` in the prose; return ``value``.

    Numbers must be finite: a NaN glued into a sentence would read as a result.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be an identifier-like string, got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # 0-d tensors and numpy scalars
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"glue {name!r}: value {value} is not finite")
    try:
        from myst_nb import glue as _glue
    except ImportError:  # plain Jupyter or Colab: nothing to register
        return value
    _glue(name, value, display=display)
    return value


def fmt(value: Any, spec: str = ".3f") -> str:
    """Format a number (or pass a string through) for a table cell."""
    if isinstance(value, str):
        return value
    if hasattr(value, "item"):
        value = value.item()
    return format(value, spec)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], spec: str | Sequence[str] = ".3f"):
    """A Markdown table (an ``IPython.display.Markdown`` in notebooks, else the string).

    Args:
        header: column titles (Markdown, math allowed).
        rows: one sequence per row; numbers are formatted with ``spec`` (one spec for all
            columns, or one per column), strings are kept.
    """
    header = list(header)
    specs = [spec] * len(header) if isinstance(spec, str) else list(spec)
    if len(specs) != len(header):
        raise ValueError(f"md_table: {len(specs)} format specs for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"md_table: a row has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(fmt(v, s) for v, s in zip(row, specs, strict=True)) + " |")
    text = "\n".join(lines)
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover
        return text
    return Markdown(text)
