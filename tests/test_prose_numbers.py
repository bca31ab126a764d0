"""No hand-typed results in the prose.

Every number a run produces reaches the reader through myst-nb ``glue`` or a table printed by
the run. This test scans the Markdown of every notebook and book page for decimal literals,
scientific notation, percentages and durations *outside* math, code and roles, and fails unless
each one is in the reviewed allow-list ``tests/prose_numbers_allowed.txt`` (constants:
hyperparameters, published reference numbers with their citation).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_FILE = ROOT / "tests" / "prose_numbers_allowed.txt"

_STRIP = [
    re.compile(r"<!--.*?-->", re.S),  # HTML comments
    re.compile(r"^(`{3,}|~{3,}).*?^\1", re.S | re.M),  # fenced code and {math} fences
    re.compile(r"\$\$.*?\$\$(\s*\([\w:-]+\))?", re.S),  # display math (+ its label)
    re.compile(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S),  # amsmath environments
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),  # inline math
    re.compile(r"\{[\w:-]+\}`[^`]*`"),  # roles: {glue:text}`x:.3f`, {eq}`label`, {cite}`key`
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets (the link text is kept)
    re.compile(r"^:[\w-]+:.*$", re.M),  # directive options (:class: ..., :width: 80%)
]

# what a hand-typed result looks like
NUMBER = re.compile(
    r"(?<![\w.])("
    r"\d+(?:\.\d+)?[eE][-+]?\d+"  # 8e-2, 1.5e-4
    r"|\d+\.\d+(?:\s?(?:%|s\b|seconds|min\b|minutes))?"  # 0.892, 2.5 s, 12.5 %
    r"|\d+\s?(?:%|s\b|seconds|min\b|minutes)"  # 20 %, 42 s, 10 minutes
    r")(?![\w.]*\d)"
)


def prose_sources() -> list[tuple[str, int, str]]:
    """(file, cell index or 0, markdown text) for every notebook markdown cell and book page."""
    out = []
    for path in sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("book/*.ipynb")]):
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "markdown":
                out.append((str(path.relative_to(ROOT)), i, "".join(cell["source"])))
    for path in sorted(ROOT.glob("book/*.md")):
        out.append((str(path.relative_to(ROOT)), 0, path.read_text()))
    return out


def strip_non_prose(text: str) -> str:
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    return text


def find_numbers(text: str) -> list[tuple[str, str]]:
    """(literal, context) of every result-like number in the prose part of ``text``."""
    prose = strip_non_prose(text)
    found = []
    for m in NUMBER.finditer(prose):
        lo, hi = max(0, m.start() - 40), min(len(prose), m.end() + 40)
        found.append((m.group(1), " ".join(prose[lo:hi].split())))
    return found


def load_allowed() -> dict[tuple[str, str], str]:
    allowed = {}
    for line in ALLOWED_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{ALLOWED_FILE.name}: expected 'file | literal | reason', got {line!r}")
        allowed[(parts[0], parts[1])] = parts[2]
    return allowed


@pytest.mark.parametrize(
    "text,expected",
    [
        ("F1 reached 0.892 on test", ["0.892"]),
        ("took 42 s and 10 %", ["42 s", "10 %"]),
        ("error 8e-2 at 64 NFE", ["8e-2"]),
        ("math $x=0.5$ and code `lr=1e-3` and {glue:text}`f1:.3f`", []),
        ("$$\na = 0.25\n$$ (label)\n", []),
        ("an 8×8 image, 1000 steps, chapter 3", []),
        ("<!-- 0.5 -->\n```python\nx = 0.3\n```\n", []),
    ],
)
def test_scanner_finds_typed_numbers(text, expected):
    assert [lit for lit, _ in find_numbers(text)] == expected


def test_allow_list_is_short_and_used():
    allowed = load_allowed()
    assert len(allowed) <= 40, f"the allow-list has {len(allowed)} entries: keep it short, glue the rest"
    seen = {(f, lit) for f, _, text in prose_sources() for lit, _ in find_numbers(text)}
    unused = sorted(set(allowed) - seen)
    assert not unused, "allow-list entries that no longer occur (remove them):\n" + "\n".join(map(str, unused))


def test_no_hand_typed_numbers_in_prose():
    allowed = load_allowed()
    bad = []
    for f, cell, text in prose_sources():
        for lit, ctx in find_numbers(text):
            if (f, lit) not in allowed:
                bad.append(f"{f} cell {cell}: {lit!r} in “…{ctx}…”")
    assert not bad, (
        f"{len(bad)} hand-typed number(s) in the prose: glue them from the run "
        "({glue:text}`name:.3f`), print them in a table, or add a reviewed constant to "
        f"{ALLOWED_FILE.name}:\n" + "\n".join(bad)
    )
