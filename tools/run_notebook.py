"""Execute one notebook in place of a reader and print what it shows (for authors).

    python tools/run_notebook.py notebooks/03_ode_heat.ipynb [--save out.ipynb]

Runs every cell with the notebook's folder as working directory (as the book build and nbval
do), prints each cell's text outputs (stdout, text/plain, text/markdown) and the glued values,
and the wall time. The stored notebook is never modified. Run it alone on a shared machine:
two torch processes on two cores slow each other down many times.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook")
    ap.add_argument("--save", help="write the executed notebook here")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    path = Path(args.notebook).resolve()
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("TQDM_MININTERVAL", "10")
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    failed = None
    try:
        client.execute()
    except Exception as err:  # noqa: BLE001 - report and still print what ran
        failed = err
    seconds = time.perf_counter() - t0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text = out.text
            elif out.output_type in ("execute_result", "display_data"):
                data = out.get("data", {})
                meta = out.get("metadata", {})
                if "scrapbook" in meta:  # myst-nb glue: the value sits under a papermill mime prefix
                    plain = next((v for k, v in data.items() if k.endswith("text/plain")), "")
                    text = f"[glue {meta['scrapbook'].get('name')}] {plain}"
                else:
                    text = data.get("text/markdown") or data.get("text/plain") or f"<{', '.join(data)}>"
            elif out.output_type == "error":
                text = f"ERROR {out.ename}: {out.evalue}"
            else:
                continue
            print(f"[cell {i}] {text.rstrip()}")
    print(f"== {path.name}: {seconds:.1f} s{'  FAILED: ' + repr(failed)[:500] if failed else ''}")
    if args.save:
        nbformat.write(nb, args.save)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
