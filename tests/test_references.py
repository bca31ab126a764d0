"""Every work in book/references.bib is cited by a label that names it (book/ext/bib_labels.py)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pybtex_database = pytest.importorskip("pybtex.database")


def test_every_entry_has_a_distinct_titled_label():
    sys.path.insert(0, str(ROOT / "book" / "ext"))
    try:
        import bib_labels
    finally:
        sys.path.pop(0)
    entries = pybtex_database.parse_file(ROOT / "book" / "references.bib").entries
    missing = [key for key, e in entries.items() if not e.fields.get("shorttitle")]
    assert not missing, f"entries without a shorttitle: {missing}"
    labels = {key: bib_labels.label(e) for key, e in entries.items()}
    assert len(set(labels.values())) == len(labels), "two works share a citation label"
    assert labels["su2022ddpm3"] == "Su 2022, DDPM = Bayes"
    assert labels["ho2020ddpm"] == "Ho et al. 2020, DDPM"
    assert labels["hyvarinen2005"] == "Hyvärinen 2005, Score matching"
    # the label separates names and year from the short title by a comma; the short title holds none
    assert all(label.count(", ") == 1 for label in labels.values()), labels
