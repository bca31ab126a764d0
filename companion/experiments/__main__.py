"""``python -m companion.experiments [--list] [all | CHAPTER [NAME ...]]``: see the package docstring."""

from __future__ import annotations

import argparse
import sys
import time

from . import registry, result_path, run_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.experiments", description=__doc__)
    parser.add_argument("chapter", nargs="?", help="'all', or a chapter key such as ch8")
    parser.add_argument("names", nargs="*", help="experiment names (default: every one of the chapter)")
    parser.add_argument("--list", action="store_true", help="list the registered experiments and exit")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run even though the code has uncommitted edits (the result file lists them)")
    args = parser.parse_args(argv)
    if args.list or args.chapter is None:
        for (ch, name), exp in sorted(registry().items()):
            print(f"{ch:4s} {name:24s} {exp.description}")
        return 0
    chapter = None if args.chapter == "all" else args.chapter
    try:
        todo = sorted(registry(chapter))
    except ValueError as err:
        parser.error(str(err))
    if args.names:
        todo = [(ch, n) for ch, n in todo if n in args.names]
        missing = set(args.names) - {n for _, n in todo}
        if missing:
            parser.error(f"unknown experiment(s) {sorted(missing)} in {args.chapter}")
    t0 = time.perf_counter()
    for ch, name in todo:
        rec = run_experiment(ch, name, allow_dirty=args.allow_dirty)
        print(f"[{ch}/{name}] {rec['provenance']['seconds']:.0f} s -> {result_path(ch, name)}", flush=True)
    print(f"{len(todo)} experiment(s) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
