"""Full runs: experiments too long for a notebook's 90-second budget, run by one command.

A chapter's seed sweeps, ablations and full configurations are registered here with the
exact configuration they run. One command regenerates them and writes each one to
``results/<chapter>/<name>.json`` with its numbers and its provenance (configuration, seeds,
git commit, library versions, seconds, CPU); the notebooks load those files and render them
with their provenance line, so every number the book shows has a code path::

    python -m companion.experiments --list            # what is registered
    python -m companion.experiments ch8               # every experiment of chapter 8
    python -m companion.experiments ch8 seeds_small   # one experiment
    python -m companion.experiments all               # everything (``make results``)

A result file whose stored configuration differs from the registered one is *stale*:
:func:`load_result` refuses it and a unit test fails, so an edited experiment cannot keep
showing old numbers.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Experiment",
    "experiment",
    "registry",
    "run_experiment",
    "load_result",
    "provenance_line",
    "same_platform",
    "save_weights",
    "map_seeds",
    "load_weights",
    "results_dir",
    "dirty_code_files",
    "CHAPTER_MODULES",
    "CODE_PATHS",
]

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


def _normalise(obj: Any) -> Any:
    """JSON round trip: tuples become lists, keys strings, as in a stored file."""
    return json.loads(json.dumps(obj))


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
    """Every registered experiment (importing the chapter modules), optionally one chapter's."""
    chapters = CHAPTER_MODULES if chapter is None else {chapter: CHAPTER_MODULES.get(chapter)}
    for ch, modules in chapters.items():
        if modules is None:
            raise ValueError(f"unknown chapter {ch!r}; known: {sorted(CHAPTER_MODULES)}")
        for module in (modules,) if isinstance(modules, str) else modules:
            importlib.import_module(f"{__name__}.{module}")
    return {k: v for k, v in _REGISTRY.items() if chapter is None or k[0] == chapter}


def repo_root() -> Path:
    """The repository holding this package (the parent of ``companion/``)."""
    return Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    """Where result files live: ``$COMPANION_RESULTS`` if set, else ``<repo>/results``."""
    env = os.environ.get("COMPANION_RESULTS")
    return Path(env) if env else repo_root() / "results"


def _where() -> str:
    """Where result files were looked for, for the error messages."""
    env = os.environ.get("COMPANION_RESULTS")
    return (f"results are read from $COMPANION_RESULTS={env}" if env else
            f"results are read from {repo_root() / 'results'}; set COMPANION_RESULTS to a directory "
            "that holds results/<chapter>/ files (e.g. a clone's results/) to use those")


def result_path(chapter: str, name: str) -> Path:
    return results_dir() / chapter / f"{name}.json"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The code that produces the numbers (a result file records the commit of these paths).
CODE_PATHS = ("companion", "tools")


def dirty_code_files() -> list[str] | None:
    """Uncommitted edits of :data:`CODE_PATHS` (``None`` when git is unavailable)."""
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if status is None:
        return None
    return sorted(line.split(maxsplit=1)[1] for line in status.splitlines() if line.strip())


def _code_state() -> dict[str, Any]:
    """The commit and the uncommitted edits of the code, taken when a run *starts* (the code a
    run imports is the code of that moment, whatever is committed while it runs)."""
    dirty = dirty_code_files()
    return {"git_commit": _git("rev-parse", "HEAD"), "dirty": dirty}


def _provenance(seconds: float, threads: int, state: dict[str, Any] | None = None) -> dict[str, Any]:
    import numpy
    import torch

    from .. import __version__

    state = _code_state() if state is None else state
    dirty = state["dirty"]
    dirty_files = dirty or []
    status = None if dirty is None else "\n".join(dirty)
    return {
        "git_commit": state["git_commit"],
        "git_dirty": bool(dirty_files) if status is not None else None,
        "git_dirty_files": dirty_files,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "companion": __version__,
        },
    }


def run_experiment(chapter: str, name: str, *, out_dir: Path | None = None,
                   allow_dirty: bool = False) -> dict[str, Any]:
    """Run one registered experiment and write its result file; return what was written.

    A result file must come from the commit it records, so the run is refused while the code
    (:data:`CODE_PATHS`) has uncommitted edits, unless ``allow_dirty`` (the file then lists them).
    Torch runs with ``config["threads"]`` threads (default 1): the float sums, hence the digits,
    depend on the thread count, which the provenance records.
    """
    import torch

    exp = registry(chapter).get((chapter, name))
    if exp is None:
        known = ", ".join(n for (_, n) in registry(chapter))
        raise ValueError(f"no experiment {chapter}/{name}; {chapter} has: {known}")
    state = _code_state()
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
        "provenance": _provenance(seconds, threads, state),
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
    path = result_path(chapter, name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist ({_where()}); run `python -m companion.experiments {chapter} {name}` "
            "to create it"
        )
    record = json.loads(path.read_text())
    if check_config:
        exp = registry(chapter).get((chapter, name))
        if exp is None:
            raise ValueError(f"{path} has no registered experiment {chapter}/{name}")
        if record.get("config") != exp.config:
            raise ValueError(
                f"{path} is stale: its config differs from the code's; rerun `{exp.command}`"
            )
    return record


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


def _state_sha256(state: dict) -> str:
    """Checksum of a state dict's names, shapes and float32 values (independent of the file format)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().to(torch.float32).contiguous()
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def weights_file(chapter: str, name: str, seed: int) -> Path:
    """``results/<chapter>/<name>_seed<k>.pt``: the weights an experiment keeps for one seed."""
    return results_dir() / chapter / f"{name}_seed{int(seed)}.pt"


def save_weights(chapter: str, name: str, seed: int, state: dict) -> str:
    """Write a model's state dict next to the experiment's result file; return its checksum,
    which the experiment stores in its results under ``weights_sha256[str(seed)]``."""
    import torch

    state = {k: v.detach().clone() for k, v in state.items()}
    path = weights_file(chapter, name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return _state_sha256(state)


def load_weights(chapter: str, name: str, seed: int) -> tuple[dict, dict[str, Any]]:
    """The state dict kept by experiment ``chapter/name`` for ``seed``, and its result record.

    Refuses a stale result file (see :func:`load_result`), a missing seed, and weights whose
    checksum differs from the one the experiment recorded.
    """
    import torch

    record = load_result(chapter, name)
    sums = record["results"].get("weights_sha256", {})
    if str(seed) not in sums:
        raise ValueError(f"{chapter}/{name} kept no weights for seed {seed}; available: {sorted(sums)}")
    path = weights_file(chapter, name, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing ({_where()}); run `{record['command']}`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if _state_sha256(state) != sums[str(seed)]:
        raise ValueError(f"{path} does not match the checksum in its result file; rerun `{record['command']}`")
    return state, record


def provenance_line(record: dict[str, Any]) -> str:
    """One Markdown line saying how and where a result file was computed."""
    p = record["provenance"]
    edits = p.get("git_dirty_files")
    commit = (p.get("git_commit") or "unknown")[:8] + (
        f" + uncommitted edits of {', '.join(edits)}" if edits else " + local edits" if p.get("git_dirty") else "")
    threads = p.get("torch_threads")
    return (
        f"*Computed by `{record['command']}` in {p['seconds']:.0f} s on {p['cpu']} "
        f"({p['device'].upper()}, {threads} torch thread{'s' if threads != 1 else ''}), "
        f"torch {p['versions']['torch']}, commit {commit}, {p['date']}.*"
    )


def same_platform(record: dict[str, Any]) -> bool:
    """Whether this process runs the torch version and the CPU model that wrote ``record``.

    With the recorded thread count as well (:func:`companion.utils.torch_threads`), a deterministic
    experiment then repeats its float operations in the same order and reproduces the file to the
    last digit; elsewhere a trained model may differ by as much as one from another seed."""
    import torch

    p = record["provenance"]
    return p.get("versions", {}).get("torch") == torch.__version__ and p.get("cpu") == _cpu_name()
