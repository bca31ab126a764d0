"""Check the built book as a reader's browser sees it.

For every page of the book (``_build/html``):

* static checks: no error/traceback output cell, every internal link and anchor resolves,
  every chapter page (``notebooks/*``) has at least one figure;
* browser checks (headless Chromium, if installed): after MathJax ran, the page holds typeset
  math (``mjx-container`` elements) wherever the source had math, and no raw ``$$`` or ``\\(``
  is left in the visible text; a screenshot is saved under ``_build/screenshots/``.

Usage: ``python tools/check_html.py [_build/html]``; exits 1 and lists every problem if any.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.imgs = 0
        self.math = 0
        self.error_cells = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img":
            self.imgs += 1
        cls = a.get("class") or ""
        if "math" in cls.split():
            self.math += 1
        if "output" in cls.split() and ("error" in cls.split() or "traceback" in cls.split()):
            self.error_cells += 1


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def book_pages(root: Path) -> list[Path]:
    pages = [p for p in root.rglob("*.html") if not any(part.startswith("_") for part in p.relative_to(root).parts)]
    return sorted(p for p in pages if p.name not in ("genindex.html", "search.html", "index.html"))


def static_problems(root: Path) -> list[str]:
    problems = []
    parsed = {p: _parse(p) for p in book_pages(root)}
    for page, info in parsed.items():
        rel = page.relative_to(root)
        if info.error_cells:
            problems.append(f"{rel}: {info.error_cells} error output cell(s)")
        if rel.parts[0] == "notebooks" and info.imgs == 0:
            problems.append(f"{rel}: chapter page without any figure")
        for href in info.links:
            u = urlparse(href)
            if u.scheme or href.startswith("mailto:"):
                continue
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            if not target.exists():
                problems.append(f"{rel}: broken link {href}")
                continue
            if u.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(u.fragment) not in ids:
                    problems.append(f"{rel}: missing anchor {href}")
    return problems


def browser_problems(root: Path, shots: Path) -> list[str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chrome is None:
        msg = "headless Chromium not found (install Debian's 'chromium'); browser checks not run"
        if os.environ.get("CI"):
            return [msg]  # CI must run them
        print("WARNING:", msg)
        return []
    shots.mkdir(parents=True, exist_ok=True)
    problems = []
    for page in book_pages(root):
        rel = page.relative_to(root)
        src_math = _parse(page).math
        with tempfile.TemporaryDirectory() as profile:
            args = [chrome, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
            dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
            subprocess.run([*args, "--window-size=1280,2000", f"--screenshot={shots / (str(rel).replace('/', '__') + '.png')}",
                            page.as_uri()], capture_output=True, timeout=120)
        typeset = dom.count("<mjx-container")
        if src_math and typeset == 0:
            problems.append(f"{rel}: {src_math} math element(s) but MathJax typeset none")
        visible = html.unescape(re.sub(r"<(script|style|pre|code)[\s\S]*?</\1>", " ", dom))
        visible = re.sub(r"<[^>]+>", " ", visible)
        if "$$" in visible or "\\(" in visible or re.search(r"\$\\[a-zA-Z]", visible):
            problems.append(f"{rel}: raw math delimiters left in the visible text")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "_build/html").resolve()
    if not (root / "index.html").exists():
        print(f"no built book at {root}; run `make book` first")
        return 1
    pages = book_pages(root)
    problems = static_problems(root) + browser_problems(root, root.parent / "screenshots")
    for p in problems:
        print("PROBLEM:", p)
    print(f"checked {len(pages)} pages: {len(problems)} problem(s); screenshots in {root.parent / 'screenshots'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
