"""Notebooks are stored without outputs: the book build and nbval execute them."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_toc(path):
    toc = (path.parents[1] / "_toc.yml").read_text()
    assert f"{path.parent.name}/{path.stem}" in toc, f"{path.name} is not listed in _toc.yml"


CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_title_and_run_note(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# Chapter "), f"{path.name}: first cell must be the '# Chapter N — ...' title"
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert any("run-this-chapter" in s for s in sources), f"{path.name}: run `python tools/add_run_note.py {path}`"
