"""Run the like-for-like sampler benchmark (``companion.experiments.ch5_samplers.benchmark``) with
k-diffusion's sampling module, in one process.

Same ODEs, same starts x_T, same float64 denoisers, NFE = model calls counted by a wrapper
around the model (not by either library's own count); each sampler on each of k-diffusion's grid
families and on its own optimised grid. Writes ``results/ch5/sampler_benchmark.json`` in the
record format of ``companion.experiments``.

k-diffusion is never a dependency of the book or the package. Make a scratch environment that
sees the project's venv (its CPU torch) and add k-diffusion without dependencies::

    .venv/bin/python -m venv /tmp/kdenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/kdenv/lib/python3.11/site-packages/zz_venv.pth
    /tmp/kdenv/bin/pip install --no-deps k-diffusion torchsde torchdiffeq trampoline
    OMP_WAIT_POLICY=PASSIVE flock /tmp/cpu.lock /tmp/kdenv/bin/python tools/compare_kdiffusion.py

Only ``k_diffusion/sampling.py`` is loaded: the package's ``__init__`` imports CLIP, wandb and
torchvision, so a stub ``k_diffusion`` package with a two-line ``utils`` (``append_dims``) is
put in its place. ``python -m companion.experiments ch5 sampler_benchmark`` runs this file
with ``$KDIFFUSION_PYTHON`` and writes the same record.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import multiprocessing as mp
import os
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion.experiments import ch5_samplers as C  # noqa: E402
from companion.experiments import registry, result_path  # noqa: E402
from companion.store import _code_state, _provenance  # noqa: E402


def load_kdiffusion_sampling() -> types.ModuleType:
    """Import ``k_diffusion.sampling`` alone, with a stub package and a stub ``utils``."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed in this interpreter (see this file's docstring)")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(pkg_dir)]
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    pkg.utils = utils
    sys.modules["k_diffusion"], sys.modules["k_diffusion.utils"] = pkg, utils
    sspec = importlib.util.spec_from_file_location("k_diffusion.sampling", pkg_dir / "sampling.py")
    mod = importlib.util.module_from_spec(sspec)
    sys.modules["k_diffusion.sampling"] = mod
    sspec.loader.exec_module(mod)
    return mod


def _law(args) -> dict:
    """One ODE's rows, in a worker process (which loads k-diffusion's sampling module itself)."""
    cfg, name = args
    return C.law_rows(cfg, name, load_kdiffusion_sampling())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--print-json", action="store_true",
                    help="print the results as one JSON line (used by companion.experiments) instead of writing the file")
    args = ap.parse_args(argv)
    exp = registry("ch5")[("ch5", "sampler_benchmark")]
    cfg = json.loads(json.dumps(exp.config))
    t0, state = time.perf_counter(), _code_state()
    K = load_kdiffusion_sampling()
    cache = Path(os.environ["BENCH_CACHE"]) if os.environ.get("BENCH_CACHE") else None
    if cache is not None and cache.exists():  # the rows of an interrupted run of the same commit
        stored = json.loads(cache.read_text())
        if stored["git_commit"] != state["git_commit"] or stored["config"] != cfg:
            raise RuntimeError(f"{cache} holds rows of another commit or configuration")
        per_law = stored["per_law"]
    else:
        # the laboratories side by side (one thread each), then the digits ODE alone (digits_threads)
        labs = [n for n in cfg["laws"] if n != "digits"]
        with ProcessPoolExecutor(max_workers=int(cfg.get("workers", 1)), mp_context=mp.get_context("spawn")) as pool:
            per_law = dict(zip(labs, pool.map(_law, [(cfg, name) for name in labs]), strict=True))
        if "digits" in cfg["laws"]:
            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                per_law["digits"] = pool.submit(_law, (cfg, "digits")).result()
        if cache is not None:
            cache.write_text(json.dumps({"git_commit": state["git_commit"], "config": cfg, "per_law": per_law}))
    res = C.finish(cfg, per_law, K)
    res["peer"] = {"k-diffusion": importlib.metadata.version("k-diffusion")}
    if args.print_json:
        print(json.dumps(res))
        return 0
    record = {
        "chapter": exp.chapter, "name": exp.name, "description": exp.description, "command": exp.command,
        "config": exp.config, "results": json.loads(json.dumps(res)),
        "provenance": _provenance(time.perf_counter() - t0, int(cfg["threads"]), state),
    }
    path = result_path("ch5", "sampler_benchmark")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    for name, rows in res["summary"].items():
        for nfe, r in rows.items():
            print(name, nfe, json.dumps(r))
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
