"""The registry and the runner of the full runs (see :mod:`companion.experiments`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..store import _normalise, read_result, result_path, results_dir
from ..store import load_weights as _store_load_weights

# chapter key -> module(s) (inside this package) that register the chapter's experiments
CHAPTER_MODULES: dict[str, str | tuple[str, ...]] = {
    "ch4": "ch4_restorer",
    "ch5": ("ch5_samplers", "ch5_digits"),
    "ch6": "ch6_eae",
    "ch7": "ch7_gau",
    "ch8": "ch8_positions",
    "ch9": "ch9_triples",
}


_REGISTRY: dict[tuple[str, str], Experiment] = {}


@dataclass(frozen=True)
class Experiment:
    """One registered full run: ``run(config) -> results`` (JSON-serialisable numbers)."""

    chapter: str
    name: str
    config: dict[str, Any]
    run: Callable[[dict[str, Any]], dict[str, Any]]
    description: str

    @property
    def command(self) -> str:
        return f"python -m companion.experiments {self.chapter} {self.name}"


def experiment(chapter: str, name: str, *, config: dict[str, Any], description: str):
    """Decorator: register ``fn(config) -> results`` as experiment ``chapter/name``."""
    if chapter not in CHAPTER_MODULES:
        raise ValueError(f"unknown chapter {chapter!r}; known: {sorted(CHAPTER_MODULES)}")

    def wrap(fn: Callable[[dict[str, Any]], dict[str, Any]]):
        key = (chapter, name)
        if key in _REGISTRY and _REGISTRY[key].run is not fn:
            raise ValueError(f"experiment {chapter}/{name} is registered twice")
        _REGISTRY[key] = Experiment(chapter, name, _normalise(config), fn, description)
        return fn

    return wrap


def registry(chapter: str | None = None) -> dict[tuple[str, str], Experiment]:
    """Every registered experiment, optionally one chapter's (the chapter modules register theirs
    when :mod:`companion.experiments` is imported)."""
    if chapter is not None and chapter not in CHAPTER_MODULES:
        raise ValueError(f"unknown chapter {chapter!r}; known: {sorted(CHAPTER_MODULES)}")
    return {k: v for k, v in _REGISTRY.items() if chapter is None or k[0] == chapter}


def run_experiment(chapter: str, name: str, *, out_dir: Path | None = None,
                   allow_dirty: bool = False) -> dict[str, Any]:
    """Run one registered experiment and write its result file; return what was written.

    A result file must come from the commit it records, so the run is refused while the code
    (:data:`~companion.store.CODE_PATHS`) has uncommitted edits, unless ``allow_dirty`` (the file then lists them).
    Torch runs with ``config["threads"]`` threads (default 1): the float sums, hence the digits,
    depend on the thread count, which the provenance records.
    """
    import torch

    exp = registry(chapter).get((chapter, name))
    if exp is None:
        known = ", ".join(n for (_, n) in registry(chapter))
        raise ValueError(f"no experiment {chapter}/{name}; {chapter} has: {known}")
    state = store._code_state()
    dirty = state["dirty"]
    if dirty and not allow_dirty:
        raise RuntimeError("the code has uncommitted edits (" + ", ".join(dirty[:5]) + (", ..." if len(dirty) > 5 else "")
                           + "): commit them first so that the result file records the commit it comes from, "
                           "or pass allow_dirty=True (--allow-dirty)")
    threads = int(exp.config.get("threads", 1))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        results = exp.run(json.loads(json.dumps(exp.config)))
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
    record = {
        "chapter": chapter,
        "name": name,
        "description": exp.description,
        "command": exp.command,
        "config": exp.config,
        "results": _normalise(results),
        "provenance": store._provenance(seconds, threads, state),
    }
    path = (out_dir or results_dir()) / chapter / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    return record


def load_result(chapter: str, name: str, *, check_config: bool = True) -> dict[str, Any]:
    """Load ``results/<chapter>/<name>.json``.

    With ``check_config`` (the default) the stored configuration must equal the registered one,
    otherwise the file is stale and a ``ValueError`` says which command regenerates it.
    """
    record = read_result(chapter, name)
    if not check_config:
        return record
    exp = registry(chapter).get((chapter, name))
    if exp is None:
        raise ValueError(f"{result_path(chapter, name)} has no registered experiment {chapter}/{name}")
    if record.get("config") != exp.config:
        raise ValueError(f"{result_path(chapter, name)} is stale: its config differs from the code's; "
                         f"rerun `{exp.command}`")
    return record


def load_weights(chapter: str, name: str, seed: int) -> tuple[dict, dict[str, Any]]:
    """The state dict kept by experiment ``chapter/name`` for ``seed`` and its result record, whose
    configuration must equal the registered one (:func:`companion.store.load_weights`)."""
    exp = registry(chapter).get((chapter, name))
    if exp is None:
        raise ValueError(f"no experiment {chapter}/{name} is registered")
    return _store_load_weights(chapter, name, seed, expect=exp.config)


def _seed_worker(args):
    import torch

    fn, seed, threads = args
    torch.set_num_threads(threads)
    return fn(seed)


def map_seeds(fn: Callable[[Any], Any], seeds: Sequence[Any], *, workers: int = 1, threads: int = 1) -> list[Any]:
    """``[fn(seed) for seed in seeds]``, in ``workers`` separate processes when ``workers > 1``.

    Each process runs torch with ``threads`` threads, so the numbers are the same as a serial run
    with that thread count. ``fn`` must be a module-level function (it is pickled).
    """
    if workers <= 1 or len(seeds) <= 1:
        return [fn(s) for s in seeds]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(seeds)), mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_seed_worker, [(fn, s, threads) for s in seeds]))
