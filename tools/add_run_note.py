"""Insert (idempotently) the "run this chapter yourself" note after each chapter notebook's title.

Usage: python tools/add_run_note.py notebooks/*.ipynb
The note tells a Colab reader the one line that installs the companion; a test checks that
every chapter notebook carries it.
"""

import sys
from pathlib import Path

import nbformat
import yaml

MARK = "run-this-chapter"
# one source of truth for the repository address: _config.yml
REPO = yaml.safe_load((Path(__file__).resolve().parents[1] / "_config.yml").read_text())["repository"]["url"]
# the chapter's library module, by notebook number (its API page is linked from the note)
MODULES = {"00": "gmm", "01": "ddpm", "02": "sde", "03": "ode", "04": "unified", "05": "samplers", "06": "eae",
           "07": "gau", "08": "positions", "09": "triples"}


def note(module: str | None) -> str:
    api = (f"\nThe functions this chapter derives live in [`companion.{module}`](../book/api/{module}.md), "
           "where each one links back to its equation.") if module else ""
    return f"""<!-- {MARK} -->
:::{{admonition}} Run this chapter yourself
:class: tip
Locally, from a clone: `make book` (or `pip install -r requirements.txt`, then open this
notebook). On Colab, use the rocket button above and run this line first — it clones the
repository (with the result files of the long runs) and installs `companion` next to Colab's own
PyTorch:
`!git clone -q --depth 1 {REPO} gm && pip install -q -e gm`
Every number below is recomputed when you run the notebook; the `assert` cells are the proofs.{api}
:::"""


def add_note(path: str) -> str:
    """Insert the note after the title, or refresh it if the text (e.g. the address) changed."""
    NOTE = note(MODULES.get(Path(path).name[:2]))
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "markdown" and MARK in c.source:
            if c.source == NOTE:
                return "already up to date"
            c.source = NOTE
            nbformat.write(nb, path)
            return "note refreshed"
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(NOTE))
    nbformat.write(nb, path)
    return "note added"


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, add_note(p))
