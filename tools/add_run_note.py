"""Insert (idempotently) the "run this chapter yourself" note after each chapter notebook's title.

Usage: python tools/add_run_note.py notebooks/*.ipynb
The note tells a Colab reader the one line that installs the companion. The repository address
in it is read from ``_config.yml`` (``repository.url``, which the launch buttons read too); a test
checks that every chapter notebook carries the note exactly as this script writes it now, so a
changed address fails the tests until this script is run again.
"""

import json
import sys
import uuid
from pathlib import Path

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
:class: tip run-note dropdown
Locally, from a clone: `make book` (or `pip install -r requirements.txt`, then open this
notebook). On Colab, use the rocket button above and run this line first — it clones the
repository (with the result files of the long runs) and installs `companion` next to Colab's own
PyTorch:

```text
{colab_command()}
```

Every number below is recomputed when you run the notebook; the `assert` cells are the proofs.{api}
:::"""


def colab_command() -> str:
    """The line a Colab reader runs first (a code block in the note: it wraps on a phone, and copies)."""
    return f"!git clone -q --depth 1 {REPO} gm && pip install -q -e gm"


def _source_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def add_note(path: str) -> str:
    """Insert the note after the title, or refresh it if the text (e.g. the address) changed.

    The notebook is read and written as plain JSON in the layout it is stored in, so only the
    note's cell changes (nbformat would also reorder the keys of other cells)."""
    NOTE = note(MODULES.get(Path(path).name[:2]))
    text = Path(path).read_text(encoding="utf-8")
    nb = json.loads(text)
    for c in nb["cells"]:
        if c["cell_type"] == "markdown" and MARK in "".join(c["source"]):
            if "".join(c["source"]) == NOTE:
                return "already up to date"
            c["source"] = _source_lines(NOTE)
            break
    else:
        nb["cells"].insert(1, {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {},
                               "source": _source_lines(NOTE)})
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return "note refreshed" if MARK in text else "note added"


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, add_note(p))
