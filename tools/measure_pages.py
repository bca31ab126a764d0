"""Measure how each chapter reads: the goal table of DESIGN.md "How a chapter reads".

Opens every chapter page of the built book (``notebooks/*.html``) in the headless browser
(``$CHROMIUM``, see ``tools/browser.py``), as a reader first sees it: every dropdown (proofs,
hidden inputs, the library's source, exercise solutions) collapsed. Per page:

* **screens**: the page's scroll height at 1366 x 900, in screens of 900 px;
* **code lines**: non-blank lines of the code cells whose input is visible (not ``hide-input``,
  not inside a collapsed dropdown);
* **check paragraphs**: the share of visible prose paragraphs (``<p>`` in the article, outside
  figure captions and cell outputs) that report checks or runs, i.e. that contain at least one
  word of ``CHECK_WORDS`` (whole words, any case);
* **equations at 390 px**: display equations, how many are wider than their box on a 390 px screen
  (they scroll inside it), and how many of those are clipped (wider, and their box does not
  scroll).

Prints one row per chapter, a total row, and whether chapters 1-4 meet the goals: at most
22 screens, 150 visible code lines, 12 % check paragraphs; book-wide at most 10 % of display
equations scrolling at 390 px and none clipped (equations are counted on every page).

Usage: ``python tools/measure_pages.py [_build/html] [--json FILE]``. Exits 0 (it is an
instrument), or 1 when the browser is missing or a page could not be measured.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from browser import BrowserMissing, chromium
from check_html import WHEN_TYPESET_JS, _measure, book_pages

#: words that mark a paragraph as reporting a check or a run (regular expressions, whole words)
CHECK_WORDS = [
    r"z-scores?", r"z scores?", r"seeds?", r"standard errors?", r"standard deviations?", r"asserts?", r"asserted",
    r"provenance", r"bootstrap(?:ped)?", r"floors?", r"tolerances?", r"measured", r"Monte[- ]Carlo", r"p-values?",
    r"confidence intervals?", r"spreads?", r"sample sizes?", r"result files?",
]
GOALS = {"screens": 22, "code_lines": 150, "check_share": 0.12}
GOAL_CHAPTERS = ("01", "02", "03", "04")
EQ_SCROLL_GOAL = 0.10
WIDE, TALL, NARROW = 1366, 900, 390

_PAGE_JS = r"""
<script>
(function () {
  function visible(e) {
    return e.checkVisibility ? e.checkVisibility({visibilityProperty: true}) : !!e.getClientRects().length;
  }
  function measure() {
    const out = {width: window.innerWidth, height: document.documentElement.scrollHeight, code: [], paras: [], eq: []};
    document.querySelectorAll("div.cell_input pre").forEach(function (pre) {
      if (!visible(pre)) return;
      out.code.push(pre.textContent.split("\n").filter(function (l) { return l.trim() !== ""; }).length);
    });
    const article = document.querySelector("article.bd-article") || document.body;
    article.querySelectorAll("p").forEach(function (p) {
      if (!visible(p) || p.closest("figcaption, .cell_output, .output, pre")) return;
      const text = p.textContent.replace(/\s+/g, " ").trim();
      if (text) out.paras.push(text);
    });
    document.querySelectorAll("div.math").forEach(function (box) {
      const mjx = box.querySelector("mjx-container");
      if (!mjx) return;
      const math = mjx.querySelector("mjx-math") || mjx;
      const eqno = box.querySelector(".eqno");
      const b = box.getBoundingClientRect(), m = math.getBoundingClientRect();
      const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX) ||
                      ["auto", "scroll"].includes(getComputedStyle(mjx).overflowX);
      out.eq.push({need: m.width + (eqno ? eqno.getBoundingClientRect().width : 0), avail: b.width,
                   scrolls: scrolls, text: (math.textContent || "").slice(0, 40)});
    });
    report(out);
  }
  __WHEN_TYPESET__
  window.addEventListener("load", function () { __DARK__ whenTypeset(measure); });
})();
</script>
""".replace("__WHEN_TYPESET__", WHEN_TYPESET_JS.strip())

_CHECK_RE = re.compile(r"(?<![\w-])(" + "|".join(CHECK_WORDS) + r")(?![\w-])", re.IGNORECASE)


def is_check_paragraph(text: str) -> bool:
    return _CHECK_RE.search(text) is not None


def equation_counts(eqs: list[dict]) -> tuple[int, int, int]:
    """(display equations, wider than their box, of those clipped)."""
    wide = [e for e in eqs if e["need"] > e["avail"] + 1]
    return len(eqs), len(wide), sum(not e["scrolls"] for e in wide)


def measure(root: Path) -> tuple[list[dict], dict]:
    chrome = chromium()
    rows, other = [], {"eq": 0, "eq_scroll": 0, "eq_clipped": 0, "scrolling_equations": []}
    for page in book_pages(root):
        rel = page.relative_to(root)
        chapter = rel.parts[0] == "notebooks"
        narrow = _measure(chrome, page, NARROW, script=_PAGE_JS, height=TALL)["data"]
        if narrow is None:
            raise RuntimeError(f"{rel}: the measuring script did not run at {NARROW} px")
        n_eq, n_scroll, n_clip = equation_counts(narrow["eq"])
        if not chapter:
            other["eq"] += n_eq
            other["eq_scroll"] += n_scroll
            other["eq_clipped"] += n_clip
            other["scrolling_equations"] += [f"{rel}: {e['text']}" for e in narrow["eq"] if e["need"] > e["avail"] + 1]
            continue
        wide = _measure(chrome, page, WIDE, script=_PAGE_JS, height=TALL)["data"]
        if wide is None:
            raise RuntimeError(f"{rel}: the measuring script did not run at {WIDE} px")
        checks = [p for p in wide["paras"] if is_check_paragraph(p)]
        rows.append({"page": rel.stem, "screens": wide["height"] / TALL, "code_lines": sum(wide["code"]),
                     "code_cells": len(wide["code"]), "paragraphs": len(wide["paras"]), "check_paragraphs": len(checks),
                     "check_share": len(checks) / max(len(wide["paras"]), 1),
                     "eq": n_eq, "eq_scroll": n_scroll, "eq_clipped": n_clip,
                     "scrolling_equations": [e["text"] for e in narrow["eq"] if e["need"] > e["avail"] + 1]})
    return rows, other


def meets(row: dict) -> dict[str, bool]:
    return {k: row[k] <= v for k, v in GOALS.items()}


def table(rows: list[dict], other: dict) -> str:
    head = (f"{'chapter page':<26} {'screens':>7} {'code lines':>10} {'check paras':>14} "
            f"{'eqs':>4} {'scroll@390':>10} {'clipped':>7}  goals (ch. 1-4)")
    lines = [head, "-" * len(head)]
    for r in rows:
        goal = ""
        if r["page"][:2] in GOAL_CHAPTERS:
            ok = meets(r)
            goal = " ".join(f"{k.split('_')[0]}:{'ok' if v else 'MISS'}" for k, v in ok.items())
        lines.append(f"{r['page']:<26} {r['screens']:>7.1f} {r['code_lines']:>10d} "
                     f"{r['check_paragraphs']:>4d}/{r['paragraphs']:<3d}{100 * r['check_share']:>5.0f}% "
                     f"{r['eq']:>4d} {r['eq_scroll']:>10d} {r['eq_clipped']:>7d}  {goal}")
    n_eq = sum(r["eq"] for r in rows) + other["eq"]
    n_scroll = sum(r["eq_scroll"] for r in rows) + other["eq_scroll"]
    n_clip = sum(r["eq_clipped"] for r in rows) + other["eq_clipped"]
    lines.append("-" * len(head))
    lines.append(f"{'other pages':<26} {'':>7} {'':>10} {'':>14} {other['eq']:>4d} {other['eq_scroll']:>10d} "
                 f"{other['eq_clipped']:>7d}")
    share = n_scroll / max(n_eq, 1)
    lines.append(f"{'whole book':<26} {'':>7} {'':>10} {'':>14} {n_eq:>4d} {n_scroll:>10d} {n_clip:>7d}  "
                 f"{100 * share:.0f}% scroll at {NARROW} px (goal <= {100 * EQ_SCROLL_GOAL:.0f}%: "
                 f"{'ok' if share <= EQ_SCROLL_GOAL else 'MISS'}), clipped: {'ok' if n_clip == 0 else 'MISS'}")
    lines.append(f"goals per chapter 1-4: screens <= {GOALS['screens']}, visible code lines <= {GOALS['code_lines']}, "
                 f"check paragraphs <= {100 * GOALS['check_share']:.0f}%")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:]]
    out_json = None
    if "--json" in args:
        i = args.index("--json")
        out_json = Path(args[i + 1])
        del args[i:i + 2]
    root = Path(args[0] if args else "_build/html").resolve()
    if not (root / "index.html").exists():
        print(f"no built book at {root}; run `make book` first")
        return 1
    try:
        rows, other = measure(root)
    except (BrowserMissing, RuntimeError) as e:
        print(e)
        return 1
    print(table(rows, other))
    for r in rows:
        if r["scrolling_equations"]:
            print(f"{r['page']}: scrolling at {NARROW} px: " + "; ".join(repr(t) for t in r["scrolling_equations"]))
    for t in other["scrolling_equations"]:
        print(f"scrolling at {NARROW} px: {t!r}")
    if out_json:
        out_json.write_text(json.dumps({"chapters": rows, "other_pages": other}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
