"""Check the built book as a reader's browser sees it.

For every page of the book (``_build/html``):

* static checks: no error/traceback output cell, every internal link and anchor resolves,
  every chapter page (``notebooks/*``) has at least one figure;
* chapter N's equations, figures, tables and exercises are numbered N.1, N.2, ... in page order;
* no raw equation label reaches a reader: not in the visible text of a page, not in an image's
  alt text, not in a string that a notebook's code draws into a figure;
* browser checks (headless Chromium): after MathJax ran, the page holds typeset math
  (``mjx-container`` elements) wherever the source had math, and no raw ``$$`` or ``\\(`` is left
  in the visible text. Measured in the page at 1366 px and at 390 px: every display equation
  (with its number) fits its column at 1366 px, and at 390 px an equation that is wider than the
  screen scrolls inside its own box instead of being clipped (the count is reported); every
  figure in a chapter has a caption and alt text, and its smallest text (the style's legend
  size, scaled as the page shows the image) is at least 9 px. Screenshots of three chapters at
  both widths and in dark mode are saved under ``_build/screenshots/``.

The browser checks need headless Chromium or Chrome, named by ``$CHROMIUM`` (default ``chromium``;
see ``tools/browser.py``); without it the check fails, unless ``SKIP_BROWSER=1`` says explicitly to
skip them.

Usage: ``python tools/check_html.py [_build/html] [page filter ...]``; exits 1 and lists every problem if any.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from browser import BrowserMissing, chromium

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


ONLY: list[str] = []  # page filters from the command line (substrings of the page path)


def book_pages(root: Path) -> list[Path]:
    pages = [p for p in root.rglob("*.html")
             if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
             and not p.name.startswith(".check-")]
    pages = sorted(p for p in pages if p.name not in ("genindex.html", "search.html", "index.html")
                   or p.parent != root)
    return [p for p in pages if not ONLY or any(o in str(p.relative_to(root)) for o in ONLY)]


def numbering_problems(root: Path) -> list[str]:
    """Chapter N's equations, figures, tables and exercises are numbered N.1, N.2, ... in page order
    (book/ext/chapter_numbers.py), with N read from the page's "Chapter N" title."""
    problems = []
    for page in book_pages(root):
        text = page.read_text(encoding="utf-8", errors="replace")
        m = re.search(r"<h1>\s*Chapter (\d+)\b", text)
        if not m:
            continue
        n = m.group(1)
        kinds = {"equation": re.findall(r'<span class="eqno">\(([\d.]+)\)', text)}
        for kind, num in re.findall(r'<span class="caption-number">(\w+) ([\d.]+) ?</span>', text):
            kinds.setdefault(kind.lower(), []).append(num)
        for kind, nums in kinds.items():
            want = [f"{n}.{k}" for k in range(1, len(nums) + 1)]
            if kind in ("exercise", "figure", "table", "listing"):
                nums = list(dict.fromkeys(nums))  # a number may repeat (a solution names its exercise)
                want = want[:len(nums)]
            if nums != want:
                problems.append(f"{page.relative_to(root)}: {kind} numbers {nums[:6]}... are not "
                                f"{want[:3]}... (chapter {n}, numbered in page order)")
    return problems


_STDERR = re.compile(r'<div class="output stderr[^"]*">([\s\S]*?)</pre>')
_WARNING = re.compile(r"\b(\w*Warning): (.{0,60})")


def shown_warnings(page_html: str) -> list[str]:
    """Python warnings printed into a page's stderr outputs (progress bars are stderr too, and fine)."""
    found = []
    for block in _STDERR.findall(page_html):
        found += [f"{w}: {msg}" for w, msg in _WARNING.findall(html.unescape(re.sub(r"<[^>]+>", "", block)))]
    return found


_PLAIN = re.compile(r'<div class="output text_plain[^"]*">([\s\S]*?)</pre>')
_BARE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|'[^'\n]*'|\"[^\"\n]*\"|None|True|False")


def stray_values(page_html: str) -> list[str]:
    """Outputs that are only a number, a quoted string or None/True/False: a value the cell returned by
    accident (e.g. a last line ``glue(...)``, which returns what it glues), shown without a word."""
    values = (html.unescape(re.sub(r"<[^>]+>", "", block)).strip() for block in _PLAIN.findall(page_html))
    return [v for v in values if _BARE.fullmatch(v)]


def static_problems(root: Path) -> list[str]:
    problems = []
    parsed = {p: _parse(p) for p in book_pages(root)}
    for page, info in parsed.items():
        rel = page.relative_to(root)
        if info.error_cells:
            problems.append(f"{rel}: {info.error_cells} error output cell(s)")
        text = page.read_text(encoding="utf-8", errors="replace")
        for warning in shown_warnings(text):
            problems.append(f"{rel}: a cell shows a Python warning to the reader: {warning}")
        for value in stray_values(text):
            problems.append(f"{rel}: a cell shows a bare value with no label (a last line that returns it?): {value}")
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


ROOT = Path(__file__).resolve().parents[1]
MIN_TEXT_PX = 9.0
SHOT_PAGES = ("notebooks/01_ddpm_bayes.html", "notebooks/03_ode_heat.html", "notebooks/08_length_extrapolation.html")

# Runs in the page after MathJax: measures equations and figures, writes JSON into the DOM.
_MEASURE_JS = r"""
<script>
(function () {
  function measure() {
    const out = {width: window.innerWidth, eq: [], figs: []};
    document.querySelectorAll("div.math").forEach(function (box) {
      const mjx = box.querySelector("mjx-container");
      if (!mjx) return;
      const math = mjx.querySelector("mjx-math") || mjx;
      const eqno = box.querySelector(".eqno");
      const b = box.getBoundingClientRect(), m = math.getBoundingClientRect();
      const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX) ||
                      ["auto", "scroll"].includes(getComputedStyle(mjx).overflowX);
      out.eq.push({id: box.id || "", need: m.width + (eqno ? eqno.getBoundingClientRect().width : 0),
                   avail: b.width, scrolls: scrolls, text: (eqno ? eqno.textContent.replace("#", "") : "") +
                   " " + (math.textContent || "").slice(0, 40)});
    });
    document.querySelectorAll(".cell_output img, figure img").forEach(function (img) {
      const fig = img.closest("figure");
      out.figs.push({src: img.getAttribute("src"), w: img.getBoundingClientRect().width,
                     nw: img.naturalWidth, alt: img.getAttribute("alt") || "",
                     caption: !!(fig && fig.querySelector("figcaption"))});
    });
    report(out);
  }
  __WHEN_TYPESET__
  window.addEventListener("load", function () { __DARK__ whenTypeset(measure); });
})();
</script>
"""

# ``whenTypeset(callback)``: calls back once MathJax has typeset every math element of the page (or
# made no progress for 3 s), after 300 ms more for the layout to settle. Not MathJax.startup.promise:
# MathJax 4's also waits for its speech worker, which never finishes under headless Chromium's
# virtual time (--virtual-time-budget), while the typeset math is long in place.
# ``report(out)``: writes the measurements as JSON into <pre id="__check__"> (and hands them to the
# page's parent when the page is measured inside a narrow frame, see _measure).
WHEN_TYPESET_JS = r"""
  function report(out) {
    var s = JSON.stringify(out), pre = document.createElement("pre");
    pre.id = "__check__"; pre.textContent = s; document.body.appendChild(pre);
    if (window.parent !== window) window.parent.postMessage({__check__: s}, "*");
  }
  function whenTypeset(callback) {
    if (!document.querySelector('script[src*="mathjax"]')) { setTimeout(callback, 300); return; }
    var last = -1, still = 0;
    (function poll() {
      var els = document.querySelectorAll("div.math, span.math"), done = 0;
      els.forEach(function (e) { if (e.querySelector("mjx-container")) done++; });
      var ready = window.MathJax && MathJax.startup && MathJax.startup.document;
      still = (done === last) ? still + 1 : 0; last = done;
      if (ready && (done === els.length || still > 30)) { setTimeout(callback, 300); return; }
      setTimeout(poll, 100);
    })();
  }
"""
_MEASURE_JS = _MEASURE_JS.replace("__WHEN_TYPESET__", WHEN_TYPESET_JS.strip())


def equation_labels() -> set[str]:
    """Every equation label of the book's sources (``$$ ... $$ (label)``)."""
    labels = set()
    for path in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("book/*.ipynb")]:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                labels |= set(re.findall(r"\$\$\s*\(([\w:-]+)\)", "".join(cell["source"])))
    return labels


def raw_label_problems(root: Path) -> list[str]:
    """Raw labels in visible text, alt texts and the strings notebooks draw into figures."""
    labels = equation_labels()
    if not labels:
        return []
    pat = re.compile(r"(?<![\w#/.-])(" + "|".join(map(re.escape, sorted(labels, key=len, reverse=True))) + r")(?![\w-])")
    problems = []
    for page in book_pages(root):
        text = page.read_text(encoding="utf-8", errors="replace")
        alts = " ".join(re.findall(r'alt="([^"]*)"', text))
        visible = re.sub(r"<(script|style|pre)[\s\S]*?</\1>", " ", text)  # inline code counts: ``label``
        visible = re.sub(r'<a [^>]*class="headerlink"[^>]*>.*?</a>', " ", visible)
        visible = re.sub(r'<span class="pre">([^<]*)</span>', r"\1", visible)
        visible = html.unescape(re.sub(r"<[^>]+>", " ", visible))
        found = sorted(set(pat.findall(visible)) | set(pat.findall(alts)))
        if found:
            problems.append(f"{page.relative_to(root)}: raw equation label(s) shown to the reader: {', '.join(found[:8])}")
    for nb in sorted(ROOT.glob("notebooks/*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            strings = re.findall(r"([\"'])((?:(?!\1).)*)\1", "".join(cell["source"]))
            found = sorted({m for _, s_ in strings for m in pat.findall(s_)} - {""})
            found = [f for f in found if f"eq. {f}" in "".join(cell["source"]) or f"({f})" in "".join(cell["source"])
                     or f"eq {f}" in "".join(cell["source"])]
            if found:
                problems.append(f"{nb.name} cell {i}: a string drawn for the reader holds raw label(s) {found}")
    return problems


def _min_legend_pt() -> float:
    """The smallest font size (pt) of the book's figure style."""
    import matplotlib as mpl

    sys.path.insert(0, str(ROOT))
    from companion import plot

    plot.set_style()
    sizes = []
    for key in ("font.size", "legend.fontsize", "xtick.labelsize", "ytick.labelsize", "axes.titlesize"):
        v = mpl.rcParams[key]
        sizes.append(float(v) if not isinstance(v, str) else
                     mpl.font_manager.FontProperties(size=v).get_size_in_points())
    return min(sizes), float(mpl.rcParams["figure.dpi"])


def _chrome() -> str | None:
    try:
        return chromium()
    except BrowserMissing as e:
        print(e)
        return None


MIN_WINDOW = 500  # px: headless Chromium's narrowest window
_FRAME_HTML = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>html, body { margin: 0; } iframe { border: 0; display: block; width: __W__px; height: __H__px; }</style>
</head><body><iframe src="__SRC__"></iframe><script>
window.addEventListener("message", function (e) {
  if (!e.data || !e.data.__check__) return;
  var pre = document.createElement("pre"); pre.id = "__check__"; pre.textContent = e.data.__check__;
  document.body.appendChild(pre);
});
</script></body></html>"""


def _measure(chrome: str, page: Path, width: int, *, dark: bool = False, shot: Path | None = None,
             scroll_to: str | None = None, script: str = _MEASURE_JS, height: int = 1000,
             _retry: bool = False) -> dict:
    """Open a copy of ``page`` with a measuring script (it writes JSON into ``<pre id="__check__">``)
    in a ``width`` x ``height`` window; return the DOM and that JSON."""
    text = page.read_text(encoding="utf-8", errors="replace")
    js = script.replace("__DARK__", "document.documentElement.dataset.theme = 'dark'; "
                        "document.documentElement.dataset.mode = 'dark';" if dark else "")
    if scroll_to:  # show one section at the top of the screenshot
        js += ("<script>window.addEventListener('load', function () { var e = document.getElementById('"
               + scroll_to + "'); if (!e) return; Array.from(e.parentNode.children).forEach(function (c) {"
               " if (c !== e && c.tagName !== 'H1') c.style.display = 'none'; }); window.scrollTo(0, 0); });</script>")
    probe = page.with_name(f".check-{width}{'-dark' if dark else ''}-{page.name}")
    probe.write_text(text.replace("</body>", js + "</body>"), encoding="utf-8")
    # Headless Chromium's window is never narrower than 500 px (a 390 px window lays the page out at
    # 500 px and crops it): narrower widths are measured in a frame of exactly that width.
    frame = probe.with_name(f".check-frame-{width}-{page.name}") if width < MIN_WINDOW else None
    try:
        def open_at(h: int) -> Path:
            if frame is None:
                return probe
            frame.write_text(_FRAME_HTML.replace("__SRC__", probe.name).replace("__W__", str(width))
                             .replace("__H__", str(h)), encoding="utf-8")
            return frame

        with tempfile.TemporaryDirectory() as profile:
            args = [chrome, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                    f"--virtual-time-budget={90000 if _retry else 30000}"]
            win = max(width, MIN_WINDOW)
            dom = subprocess.run([*args, f"--window-size={win},{height}", "--dump-dom", open_at(height).as_uri()],
                                 capture_output=True, text=True, timeout=180).stdout
            if shot is not None:
                subprocess.run([*args, f"--window-size={win},2200", f"--screenshot={shot}", open_at(2200).as_uri()],
                               capture_output=True, timeout=180)
    finally:
        probe.unlink(missing_ok=True)
        if frame is not None:
            frame.unlink(missing_ok=True)
    m = re.search(r'<pre id="__check__"[^>]*>([\s\S]*?)</pre>', dom)
    data = json.loads(html.unescape(m.group(1))) if m else None
    if data is None and not _retry:  # a loaded machine can run out of the virtual time budget: once more
        return _measure(chrome, page, width, dark=dark, shot=shot, scroll_to=scroll_to, script=script,
                        height=height, _retry=True)
    return {"dom": dom, "data": data}


def browser_problems(root: Path, shots: Path) -> tuple[list[str], dict]:
    chrome = _chrome()
    stats: dict = {"overflow_390": 0, "equations": 0, "clipped_1366": 0, "small_text": 0, "uncaptioned": 0}
    if chrome is None:
        msg = "headless browser not found (see $CHROMIUM above); browser checks not run"
        if os.environ.get("SKIP_BROWSER") == "1":
            print("WARNING:", msg, "(SKIP_BROWSER=1)")
            return [], stats
        return [msg + "; set SKIP_BROWSER=1 to skip them explicitly"], stats
    shots.mkdir(parents=True, exist_ok=True)
    min_pt, dpi = _min_legend_pt()
    problems = []
    for page in book_pages(root):
        rel = page.relative_to(root)
        name = str(rel).replace("/", "__")
        src_math = _parse(page).math
        want_shot = str(rel) in SHOT_PAGES
        wide = _measure(chrome, page, 1366, shot=shots / f"{name}.1366.png" if want_shot else None)
        dom, data = wide["dom"], wide["data"]
        typeset = dom.count("<mjx-container")
        if src_math and typeset == 0:
            problems.append(f"{rel}: {src_math} math element(s) but MathJax typeset none")
        visible = html.unescape(re.sub(r"<(script|style|pre|code)[\s\S]*?</\1>", " ", dom))
        visible = re.sub(r"<[^>]+>", " ", visible)
        if "$$" in visible or "\\(" in visible or re.search(r"\$\\[a-zA-Z]", visible):
            problems.append(f"{rel}: raw math delimiters left in the visible text")
        if data is None:
            if src_math:
                problems.append(f"{rel}: the measuring script did not run (MathJax never finished?)")
            continue
        for eq in data["eq"]:
            stats["equations"] += 1
            if eq["need"] > eq["avail"] + 1:
                stats["clipped_1366"] += 1
                problems.append(f"{rel}: equation {eq['text'].strip()[:50]!r} needs {eq['need']:.0f} px, "
                                f"column {eq['avail']:.0f} px at 1366 px")
        for fig in data["figs"]:
            if not fig["nw"] or "logo" in fig["src"]:
                continue
            if rel.parts[0] == "notebooks":
                if not fig["caption"]:
                    stats["uncaptioned"] += 1
                    problems.append(f"{rel}: figure {fig['src']} has no caption")
                if not fig["alt"] or re.fullmatch(r"[0-9a-f]{20,}\.\w+|_images/.*|\S+\.png", fig["alt"]):
                    problems.append(f"{rel}: figure {fig['src']} has no alt text saying what it shows")
                # the style's smallest font, in CSS px, as the page shows the image
                scale = fig["w"] / fig["nw"]
                px = min_pt / 72 * _png_dpi(root, page, fig["src"], dpi) * scale
                if px < MIN_TEXT_PX:
                    stats["small_text"] += 1
                    problems.append(f"{rel}: figure {fig['src']} shown at {scale:.2f}x: its {min_pt:g} pt text "
                                    f"renders {px:.1f} px (< {MIN_TEXT_PX:g})")
        narrow = (_measure(chrome, page, 390, shot=shots / f"{name}.390.png" if want_shot else None)["data"]
                  if data["eq"] or want_shot else None)
        if narrow is not None:
            for eq in narrow["eq"]:
                if eq["need"] > eq["avail"] + 1:
                    stats["overflow_390"] += 1
                    if not eq["scrolls"]:
                        problems.append(f"{rel}: equation {eq['text'].strip()[:50]!r} is clipped at 390 px")
        if str(rel) == SHOT_PAGES[0]:
            _measure(chrome, page, 1366, dark=True, shot=shots / f"{name}.1366.dark.png")
            # the exercises, whose solutions must be collapsed by default
            _measure(chrome, page, 1366, shot=shots / f"{name}.exercises.png", scroll_to="exercises")
    return problems, stats


def _png_dpi(root: Path, page: Path, src: str, default: float) -> float:
    """Pixels per inch the figure was drawn at (from the PNG's pHYs chunk; 2x for retina output)."""
    path = (page.parent / unquote(src)).resolve()
    try:
        data = path.read_bytes()
    except OSError:
        return default
    i = data.find(b"pHYs")
    if i < 0 or len(data) < i + 13:
        return default
    ppm = int.from_bytes(data[i + 4:i + 8], "big")
    unit = data[i + 12]
    return ppm * 0.0254 if unit == 1 and ppm > 0 else default


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "_build/html").resolve()
    ONLY[:] = argv[2:]
    if not (root / "index.html").exists():
        print(f"no built book at {root}; run `make book` first")
        return 1
    pages = book_pages(root)
    browser, stats = browser_problems(root, root.parent / "screenshots")
    problems = static_problems(root) + numbering_problems(root) + raw_label_problems(root) + browser
    for p in problems:
        print("PROBLEM:", p)
    print(f"display equations: {stats['equations']}, clipped at 1366 px: {stats['clipped_1366']}, "
          f"wider than a 390 px screen (scrolling in their box): {stats['overflow_390']}; "
          f"uncaptioned figures: {stats['uncaptioned']}, figures with text under {MIN_TEXT_PX:g} px: {stats['small_text']}")
    print(f"checked {len(pages)} pages: {len(problems)} problem(s); screenshots in {root.parent / 'screenshots'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
