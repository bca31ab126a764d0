"""Notebooks are stored without outputs: the book build and nbval execute them."""

import importlib.util
import json
import pathlib

import pytest
import yaml

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
    notes = [s for s in sources if "run-this-chapter" in s]
    assert notes, f"{path.name}: run `python tools/add_run_note.py {path}`"
    # the note is exactly what the script writes now: the repository address is _config.yml's
    spec = importlib.util.spec_from_file_location("add_run_note", ROOT / "tools" / "add_run_note.py")
    add_run_note = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(add_run_note)
    expected = add_run_note.note(add_run_note.MODULES.get(path.name[:2]))
    assert notes == [expected], f"{path.name}: the run note is stale: run `python tools/add_run_note.py {path}`"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] in expected


def _last_glue_call(source: str) -> bool:
    """True when a cell ends with a bare ``glue(...)`` call not silenced by ``;``."""
    import ast

    text = source.rstrip()
    try:
        tree = ast.parse(text)
    except SyntaxError:  # IPython magics: not our concern here
        return False
    last = tree.body[-1] if tree.body else None
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and getattr(last.value.func, "id", None) == "glue" and not text.endswith(";"))


def test_last_glue_call_detector():
    assert _last_glue_call('glue("a", 1)\n') and _last_glue_call('x = 1\nglue("a", x)')
    assert not _last_glue_call('glue("a", 1);\n') and not _last_glue_call('glue("a", 1)\nx = 2')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_stray_glued_value(path):
    """``glue`` returns its value, so a cell that ends with it shows the bare number to the reader."""
    nb = json.loads(path.read_text())
    bad = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and _last_glue_call("".join(c["source"]))]
    assert not bad, f"{path.name}: cells {bad} end with a bare glue(...) call; end the line with ';'"
