"""The results and weights store: where result files and kept weights live, their provenance,
and the checks that refuse a stale file or a mismatched checksum.

``results/<chapter>/<name>.json`` holds an experiment's numbers, its configuration and its provenance
(configuration, seeds, git commit, library versions, seconds, CPU); ``<name>_seed<k>.pt`` the weights it
kept, whose checksums the JSON file records. ``$COMPANION_RESULTS`` points the store at another
directory laid out the same way (e.g. a clone's ``results/``). The experiments that write these files
are registered in :mod:`companion.experiments`; this layer only reads and writes them, so the
trained-model recipes (:mod:`companion.recipes.denoiser`) can load weights without importing the runner.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "repo_root",
    "results_dir",
    "packaged_results",
    "result_path",
    "read_result",
    "weights_file",
    "save_weights",
    "load_weights",
    "provenance_line",
    "same_platform",
    "dirty_code_files",
    "CODE_PATHS",
]


def repo_root() -> Path:
    """The repository holding this package (the parent of ``companion/``)."""
    return Path(__file__).resolve().parents[2]


def packaged_results() -> Path | None:
    """The copy of ``results/`` that a wheel installs as package data (``companion._results``), or
    ``None`` in a source checkout, which reads the repository's ``results/`` instead."""
    try:
        from importlib.resources import files

        path = Path(str(files("companion._results")))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_dir() else None


def results_dir() -> Path:
    """Where result files live: ``$COMPANION_RESULTS`` if set; else ``<repo>/results`` in a source
    checkout; else the copy installed with the package (:func:`packaged_results`)."""
    env = os.environ.get("COMPANION_RESULTS")
    if env:
        return Path(env)
    repo = repo_root() / "results"
    if repo.is_dir():
        return repo
    return packaged_results() or repo


def _where() -> str:
    """Where result files were looked for, for the error messages."""
    env = os.environ.get("COMPANION_RESULTS")
    return (f"results are read from $COMPANION_RESULTS={env}" if env else
            f"results are read from {results_dir()}; set COMPANION_RESULTS to a directory "
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

    from .._version import __version__

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


def _normalise(obj: Any) -> Any:
    """JSON round trip: tuples become lists, keys strings, as in a stored file."""
    return json.loads(json.dumps(obj))


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


def read_result(chapter: str, name: str, *, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read ``results/<chapter>/<name>.json``.

    ``expect``: configuration entries the stored configuration must hold (compared after a JSON
    round trip); a file that differs is *stale* and a ``ValueError`` names the command that
    regenerates it. :func:`companion.experiments.runner.load_result` passes the whole registered
    configuration.
    """
    path = result_path(chapter, name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist ({_where()}); run `python -m companion.experiments {chapter} {name}` "
            "to create it"
        )
    record = json.loads(path.read_text())
    if expect is not None:
        stored = record.get("config") or {}
        wrong = sorted(k for k, v in _normalise(expect).items() if stored.get(k) != v)
        if wrong:
            raise ValueError(f"{path} is stale: its config differs from the code's in {wrong}; "
                             f"rerun `{record.get('command', f'python -m companion.experiments {chapter} {name}')}`")
    return record


def load_weights(chapter: str, name: str, seed: int, *,
                 expect: dict[str, Any] | None = None) -> tuple[dict, dict[str, Any]]:
    """The state dict kept by experiment ``chapter/name`` for ``seed``, and its result record.

    Refuses a stale result file (``expect``, see :func:`read_result`), a missing seed, and weights
    whose checksum differs from the one the experiment recorded.
    """
    import torch

    record = read_result(chapter, name, expect=expect)
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

    With the recorded thread count as well (:func:`companion.core.utils.torch_threads`), a deterministic
    experiment then repeats its float operations in the same order and reproduces the file to the
    last digit; elsewhere a trained model may differ by as much as one from another seed."""
    import torch

    p = record["provenance"]
    return p.get("versions", {}).get("torch") == torch.__version__ and p.get("cpu") == _cpu_name()
