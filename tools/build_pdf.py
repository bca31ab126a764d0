"""Build the whole-book PDF from the built HTML, offline.

Every page of the table of contents, in order, is printed by the local headless Chromium
(``$CHROMIUM``, see ``tools/browser.py``)
(after MathJax has typeset it; the theme's print stylesheet drops the sidebars), then the
pages are joined into one PDF with a bookmark per page:

    python tools/build_pdf.py [_build/html]   # writes _build/html/generative-models-derived.pdf

Run by ``make book`` after the HTML build; the intro page and the download menu link to it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from browser import BrowserMissing, chromium
from pypdf import PdfReader, PdfWriter

ROOT = Path(__file__).resolve().parents[1]
PDF_NAME = "generative-models-derived.pdf"
# MathJax breaks a display equation for the width of its column on screen, when it typesets the page,
# and printing does not redo it. At a 680 px window the theme's column is 648 px wide; the printed
# column (US Letter, Chromium's default margins) is about 670 px: every equation broken for the
# screen fits the paper. (At Chromium's default 800 px window the column is 736 px, and equations
# broken for it ran past the printed column, with scrollbars.)
SCREEN_WIDTH = 680
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-pdf-header-footer", "--virtual-time-budget=30000", "--run-all-compositor-stages-before-draw",
         f"--window-size={SCREEN_WIDTH},1000"]


def toc_files() -> list[str]:
    """Document paths (without suffix) in reading order, from ``_toc.yml``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return out


def page_title(html_path: Path) -> str:
    text = html_path.read_text(encoding="utf-8", errors="replace")
    start = text.find("<title>")
    title = text[start + 7:text.find("</title>", start)] if start >= 0 else html_path.stem
    return title.split(" — ")[0].split(" &#8212; ")[0].strip()


def main(argv: list[str]) -> int:
    html_root = Path(argv[1] if len(argv) > 1 else "_build/html").resolve()
    try:
        chrome = chromium()
    except BrowserMissing as e:
        print(f"the PDF needs a headless browser: {e}")
        return 1
    t0 = time.perf_counter()
    writer = PdfWriter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, doc in enumerate(toc_files()):
            page = html_root / f"{doc}.html"
            if not page.exists():
                print(f"missing page {page}")
                return 1
            out = Path(tmp) / f"{i:03d}.pdf"
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([chrome, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={out}", page.as_uri()],
                               capture_output=True, timeout=300)
            if not out.exists() or out.stat().st_size == 0:
                print(f"Chromium printed nothing for {page}")
                return 1
            start = len(writer.pages)
            for p in PdfReader(out).pages:
                writer.add_page(p)
            writer.add_outline_item(title=page_title(page), page_number=start)
        writer.add_metadata({"/Title": "Generative Models, Derived and Proved"})
        target = html_root / PDF_NAME
        with open(target, "wb") as fh:
            writer.write(fh)
    print(f"{target}: {len(writer.pages)} pages, {target.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
