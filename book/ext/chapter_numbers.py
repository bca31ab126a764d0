"""Number equations, figures, tables and exercises per chapter: (3.12), Figure 3.2, Exercise 3.1.

Sphinx numbers these per *section number* (``numfig`` + ``math_numfig``, ``numfig_secnum_depth``),
and section numbers come only from a ``:numbered:`` toctree. That cannot give this book's numbers:

* the chapters are numbered from 0 (their titles read "Chapter 0 — ..." to "Chapter 9 — ..."),
  while a numbered toctree always counts from 1;
* a numbered toctree also numbers the unnumbered pages beside the chapters (the notation page sits
  in the same part as chapter 0), and prints its numbers in front of every heading and every
  sidebar entry ("1. Chapter 0 — ..."), next to the numbers the titles already carry.

So the chapter number is read from the one place that states it, the page title ("Chapter N"),
and handed to Sphinx's own figure numbering: after Sphinx's toctree collector has numbered the
book (``env-get-updated``), this extension runs that same numbering again with each chapter page
given the section number ``(N,)``, then puts the (empty) section numbers back, so headings and
sidebar show no extra numbers. Every consumer of the numbers (equation labels, ``{eq}`` and
``:eq:`` references from any page, figure captions, ``{numref}``, sphinx-exercise titles and
references) reads them from ``env.toc_fignumbers`` and follows. Pages without a "Chapter N"
title keep the plain book-wide counter.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.environment.collectors.toctree import TocTreeCollector
from sphinx.util import logging

logger = logging.getLogger(__name__)
CHAPTER_TITLE = re.compile(r"^\s*Chapter\s+(\d+)\b")


def chapter_numbers(env: BuildEnvironment) -> dict[str, int]:
    """Chapter number of each page whose title starts with "Chapter N"."""
    numbers: dict[str, int] = {}
    seen: dict[int, str] = {}
    for docname in sorted(env.found_docs):
        title = env.titles.get(docname)
        m = CHAPTER_TITLE.match(title.astext()) if title is not None else None
        if m is None:
            continue
        n = int(m.group(1))
        if n in seen:
            logger.warning("chapter %d is the title of both %s and %s", n, seen[n], docname,
                           location=docname, type="chapter_numbers")
        seen[n] = docname
        numbers[docname] = n
    return numbers


def renumber(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Redo Sphinx's figure/equation numbering with each chapter page numbered by its title."""
    if not env.config.numfig:
        return []
    chapters = chapter_numbers(env)
    saved = env.toc_secnumbers
    env.toc_secnumbers = {**saved}
    for docname, n in chapters.items():
        if saved.get(docname):
            logger.warning("%s has section numbers from a numbered toctree; its chapter number %d "
                           "is not applied", docname, n, location=docname, type="chapter_numbers")
            continue
        env.toc_secnumbers[docname] = {"": (n,)}
    try:
        return TocTreeCollector().assign_figure_numbers(env)
    finally:
        env.toc_secnumbers = saved


def setup(app: Sphinx) -> dict:
    # after the toctree collector (priority 500), which numbers the whole book in one sequence
    app.connect("env-get-updated", renumber, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
