"""Insert (idempotently) the "run this chapter yourself" note after each chapter notebook's title.

Usage: python tools/add_run_note.py notebooks/*.ipynb
The note tells a Colab reader the one line that installs the companion; a test checks that
every chapter notebook carries it.
"""

import sys

import nbformat

MARK = "run-this-chapter"
REPO = "https://github.com/companion-book/generative-models-derived"
NOTE = f"""<!-- {MARK} -->
:::{{admonition}} Run this chapter yourself
:class: tip
Locally, from a clone: `make book` (or `pip install -r requirements.txt`, then open this
notebook). On Colab, use the rocket button above and run this line first — it installs
`companion` next to Colab's own PyTorch:
`!pip install -q "git+{REPO}"`
Every number below is recomputed when you run the notebook; the `assert` cells are the proofs.
:::"""


def add_note(path: str) -> bool:
    nb = nbformat.read(path, as_version=4)
    if any(MARK in c.source for c in nb.cells if c.cell_type == "markdown"):
        return False
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(NOTE))
    nbformat.write(nb, path)
    return True


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, "note added" if add_note(p) else "already has the note")
