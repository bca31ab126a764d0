"""Command line of chapter 9 (:func:`companion.sequence.triples.cli.main`)::

    python -m companion.sequence.triples_cli train --train T.jsonl --dev D.jsonl --schema S.json [--out DIR]
    python -m companion.sequence.triples_cli predict --model DIR [--input FILE.jsonl] [--output OUT.jsonl]
    python -m companion.sequence.triples_cli demo DIR      # writes a generated Chinese corpus in that format

A separate module, so that ``python -m`` does not execute :mod:`companion.sequence.triples` a second time
(the package imports it).
"""

from .triples import main

if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
