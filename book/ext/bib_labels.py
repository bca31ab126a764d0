"""Citations that name the work: [Su 2022, DDPM = Bayes], [Ho et al. 2020, DDPM].

With pybtex's ``alpha`` labels one author's many posts were told apart by a letter only
([Su22a] ... [Su22f]), which says nothing about which post is meant. This module defines, through
the plugin mechanisms sphinxcontrib-bibtex documents:

* a pybtex label style ``titled``: ``<names> <year>, <short title>``, where the names are the one
  author's last name, "A and B" for two authors, "A et al." for more, and the short title is the
  entry's ``shorttitle`` field (a standard biblatex field; every entry of ``book/references.bib``
  has one). An entry without one falls back to its title, cut at the first colon and at six words.
  Two entries with the same label are a warning (and so fail the ``-W`` build);
* a pybtex formatting style ``titled``: pybtex's ``unsrt`` entries, sorted by author, year and
  title (as ``alpha`` is), labelled by ``titled``  (``bibtex_default_style: titled``);
* a sphinxcontrib-bibtex referencing style ``titled``: the ``label`` style, with "; " between
  the works of one citation, since a label holds a comma (``bibtex_reference_style: titled``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.util import logging
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.label import LabelReferenceStyle

logger = logging.getLogger(__name__)


def _plain(rich_parts) -> str:
    """LaTeX-free text of a name's parts (``Hyv{\\"a}rinen`` -> ``Hyvärinen``)."""
    return " ".join(Text(p).render_as("text") for p in rich_parts)


def _surname(person) -> str:
    return " ".join(s for s in (_plain(person.rich_prelast_names), _plain(person.rich_last_names)) if s)


def names(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    if not people:
        return ""
    if len(people) == 1:
        return _surname(people[0])
    if len(people) == 2:
        return f"{_surname(people[0])} and {_surname(people[1])}"
    return f"{_surname(people[0])} et al."


def short_title(entry) -> str:
    """The entry's ``shorttitle``, else its title up to the first colon, at most six words."""
    short = entry.fields.get("shorttitle")
    if short is None:
        title = Text.from_latex(entry.fields.get("title", "")).render_as("text")
        words = re.split(r"[:：]", title, maxsplit=1)[0].split()
        short = " ".join(words[:6]) + (" …" if len(words) > 6 else "")
    return Text.from_latex(short).render_as("text").strip()


def label(entry) -> str:
    head = " ".join(s for s in (names(entry), entry.fields.get("year", "")) if s)
    return f"{head}, {short_title(entry)}" if head else short_title(entry)


class TitledLabelStyle(BaseLabelStyle):
    """``<names> <year>, <short title>``; duplicates are reported."""

    def format_labels(self, sorted_entries):
        seen: dict[str, str] = {}
        for entry in sorted_entries:
            text = label(entry)
            if text in seen:
                logger.warning("citation label %r of %s is also the label of %s: give one a distinct "
                               "shorttitle in book/references.bib", text, entry.key, seen[text],
                               type="bib_labels")
            seen[text] = entry.key
            yield text


class TitledStyle(UnsrtStyle):
    default_sorting_style = "author_year_title"
    default_label_style = "titled"


@dataclass
class TitledReferenceStyle(LabelReferenceStyle):
    """``[Su 2022, DDPM = Bayes; Ho et al. 2020, DDPM]``: works of one citation split by "; "."""

    bracket_parenthetical: BracketStyle = field(default_factory=lambda: BracketStyle(sep="; "))
    bracket_textual: BracketStyle = field(default_factory=lambda: BracketStyle(sep="; "))
    bracket_label: BracketStyle = field(default_factory=lambda: BracketStyle(sep="; "))


pybtex.plugin.register_plugin("pybtex.style.labels", "titled", TitledLabelStyle)
pybtex.plugin.register_plugin("pybtex.style.formatting", "titled", TitledStyle)
register_plugin("sphinxcontrib.bibtex.style.referencing", "titled", TitledReferenceStyle)


def setup(app) -> dict:
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
