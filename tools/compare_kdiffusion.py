"""Compare the companion's ODE samplers with k-diffusion's, in one run (chapter 3, fast samplers).

Same laboratory laws, same Karras grid, same starts x_T, same float64 exact denoiser, NFE =
model calls counted by a wrapper around the model (not by either library's own count). Error:
mean pathwise distance to a DOP853 solve at 1e-12 from the same x_T. Writes
``results/ch3/kdiffusion_comparison.json`` in the record format of ``companion.experiments``.

k-diffusion is never a dependency of the book or the package. Make a scratch environment that
sees the project's venv (its CPU torch) and add k-diffusion without dependencies::

    .venv/bin/python -m venv /tmp/kdenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/kdenv/lib/python3.11/site-packages/zz_venv.pth
    /tmp/kdenv/bin/pip install --no-deps k-diffusion torchsde torchdiffeq trampoline
    OMP_WAIT_POLICY=PASSIVE flock /tmp/cpu.lock /tmp/kdenv/bin/python tools/compare_kdiffusion.py

Only ``k_diffusion/sampling.py`` is loaded: the package's ``__init__`` imports CLIP, wandb and
torchvision, so a stub ``k_diffusion`` package with a two-line ``utils`` (``append_dims``) is
put in its place. ``python -m companion.experiments ch3 kdiffusion_comparison`` runs this file
with ``$KDIFFUSION_PYTHON`` and writes the same record.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import samplers as S  # noqa: E402
from companion.experiments import _provenance, registry, result_path  # noqa: E402
from companion.experiments import ch3_samplers as C  # noqa: E402


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


class KModel:
    """k-diffusion's model interface ``model(x, sigma * s_in) -> denoised`` over a companion
    denoiser, counting calls (one noise level per call: every k-diffusion sampler passes a
    constant ``sigma`` across the batch)."""

    def __init__(self, denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma, **_):
        self.nfe += 1
        s = sigma.reshape(-1)
        if s.numel() > 1 and not bool((s == s[0]).all()):
            raise ValueError("per-sample noise levels are not supported by this wrapper")
        return self.denoiser(x, float(s[0]))


def kd_samplers(K, cfg) -> dict:
    """Name -> (runner(model, x, grid_fn, nfe) -> x, model calls per step). ``grid_fn(steps)``
    gives the grid; dpm_fast chooses its own (uniform in log sigma)."""
    smin, smax = cfg["sigma_min"], cfg["sigma_max"]
    q = dict(disable=True)
    return {
        "euler": (lambda m, x, g, nfe: K.sample_euler(m, x, g(nfe), **q), 1),
        "heun": (lambda m, x, g, nfe: K.sample_heun(m, x, g(nfe // 2), **q), 2),
        "dpm_2": (lambda m, x, g, nfe: K.sample_dpm_2(m, x, g(nfe // 2), **q), 2),
        "lms": (lambda m, x, g, nfe: K.sample_lms(m, x, g(nfe), **q), 1),
        "dpmpp_2m": (lambda m, x, g, nfe: K.sample_dpmpp_2m(m, x, g(nfe), **q), 1),
        "dpmpp_3m_sde(eta=0)": (lambda m, x, g, nfe: K.sample_dpmpp_3m_sde(m, x, g(nfe), eta=0.0, **q), 1),
        "dpm_fast": (lambda m, x, g, nfe: K.sample_dpm_fast(m, x, smin, smax, nfe, **q), 1),
    }


def kd_fixed(K, cfg, labs, grid_info) -> dict:
    """k-diffusion's samplers on the Karras grid and on the grid optimised for the companion's
    first ``opt_samplers`` entry (same warp, rescaled to the sampler's number of steps)."""
    best_name = cfg["opt_samplers"][0]
    out = {}
    for name, lab in labs.items():
        x, ref = lab["test"]
        rows = {}
        for kname, (run, per_step) in kd_samplers(K, cfg).items():
            for nfe in cfg["nfe"]:
                if nfe % per_step:
                    continue
                for tag, gfn in (("", lambda st: C.karras(cfg, st)),
                                 (" on opt grid", lambda st, nfe=nfe: S.warped_grid(
                                     grid_info[f"{best_name} @{nfe}"]["params"], st, cfg["sigma_min"],
                                     cfg["sigma_max"]))):
                    if tag and kname == "dpm_fast":
                        continue
                    m = KModel(lab["denoiser"])
                    y = run(m, x.clone(), gfn, nfe)
                    if m.nfe != nfe:
                        raise AssertionError(f"{kname}: {m.nfe} model calls, expected {nfe}")
                    rows[f"{kname}{tag} @{nfe}"] = S.pathwise_error(y, ref)
        out[name] = rows
    return out


def kd_adaptive(K, cfg, labs) -> dict:
    out = {}
    for name, lab in labs.items():
        x, ref = lab["test"]
        rows = {}
        for order in (3, 2):
            for tol in cfg["adaptive_tols"]:
                m = KModel(lab["denoiser"])
                y, info = K.sample_dpm_adaptive(m, x.clone(), cfg["sigma_min"], cfg["sigma_max"], order=order,
                                                rtol=tol, atol=tol * cfg["atol_ratio"], disable=True, return_info=True)
                rows.setdefault(f"dpm_adaptive order {order}", []).append(
                    {"rtol": tol, "nfe": m.nfe, "nfe_reported": info["nfe"], "error": S.pathwise_error(y, ref)})
        out[name] = rows
    return out


def kd_overhead(K, cfg, labs) -> dict:
    lab = labs["lab_2d"]
    x, _ = lab["test"]
    out = {}
    for mname, model in C.models_for_overhead(lab).items():
        for kname in ("lms", "dpmpp_2m"):
            run, per_step = kd_samplers(K, cfg)[kname]
            nfe = cfg["overhead_nfe"]
            out[f"{kname} / {mname}"] = C.overhead(
                lambda d, run=run, nfe=nfe: run(KModel(d), x, lambda st: C.karras(cfg, st), nfe), model,
                cfg["overhead_repeats"])
    return out


def nfe_at_equal_error(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """For each of their points, the NFE our sweep needs for the same error (log-log interpolation
    along our sweep, sorted by NFE; None outside our range)."""
    pts = sorted((p["nfe"], p["error"]) for p in ours)
    out = []
    for p in theirs:
        need = None
        for (n0, e0), (n1, e1) in zip(pts, pts[1:], strict=False):
            if e0 >= p["error"] >= e1 and e0 > e1:
                t = (math.log(e0) - math.log(p["error"])) / (math.log(e0) - math.log(e1))
                need = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
                break
        if need is None and pts and pts[0][1] <= p["error"]:
            need = float(pts[0][0])  # already below their error at our cheapest point
        out.append({"their_rtol": p["rtol"], "their_nfe": p["nfe"], "error": p["error"], "our_nfe": need})
    return out


def compute(cfg: dict) -> dict:
    K = load_kdiffusion_sampling()
    torch.set_num_threads(int(cfg.get("threads", 1)))
    labs, grids, res = C.companion_part(cfg)
    res["kdiffusion"] = kd_fixed(K, cfg, labs, res["optimised_grids"])
    res["kdiffusion_adaptive"] = kd_adaptive(K, cfg, labs)
    res["kdiffusion_overhead"] = kd_overhead(K, cfg, labs)
    res["equal_error"] = {
        name: {f"{ours} vs {theirs}": nfe_at_equal_error(res["companion_adaptive"][name][ours],
                                                          res["kdiffusion_adaptive"][name][theirs])
               for ours in res["companion_adaptive"][name] for theirs in res["kdiffusion_adaptive"][name]}
        for name in labs}
    res["summary"] = summary(cfg, res)
    res["peer"] = {"k-diffusion": importlib.metadata.version("k-diffusion"),
                   "torchsde": importlib.metadata.version("torchsde"),
                   "torchdiffeq": importlib.metadata.version("torchdiffeq")}
    return res


def summary(cfg: dict, res: dict) -> dict:
    """Best fixed-step sampler of each library at each NFE and law, default and optimised grids."""
    out = {}
    for name in res["companion"]:
        rows = {}
        for nfe in cfg["nfe"]:
            suffix = f" @{nfe}"
            ours = {k[: -len(suffix)]: v for k, v in res["companion"][name].items() if k.endswith(suffix)}
            theirs = {k[: -len(suffix)]: v for k, v in res["kdiffusion"][name].items() if k.endswith(suffix)}
            ours_k = {k: v for k, v in ours.items() if " opt" not in k}
            ours_o = {k: v for k, v in ours.items() if " opt" in k}
            theirs_k = {k: v for k, v in theirs.items() if "on opt grid" not in k}
            theirs_o = {k: v for k, v in theirs.items() if "on opt grid" in k}
            bo, bt = min(ours_k, key=ours_k.get), min(theirs_k, key=theirs_k.get)
            bog, btg = min(ours_o, key=ours_o.get), min(theirs_o, key=theirs_o.get)
            rows[str(nfe)] = {
                "companion_best": bo, "companion_error": ours_k[bo],
                "kdiffusion_best": bt, "kdiffusion_error": theirs_k[bt],
                "ratio": ours_k[bo] / theirs_k[bt],
                "companion_best_opt_grid": bog, "companion_error_opt_grid": ours_o[bog],
                "ratio_opt_grid": ours_o[bog] / theirs_k[bt],
                "kdiffusion_best_on_opt_grid": btg, "kdiffusion_error_on_opt_grid": theirs_o[btg],
            }
        out[name] = rows
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--print-json", action="store_true",
                    help="print the results as one JSON line (used by companion.experiments) instead of writing the file")
    args = ap.parse_args(argv)
    cfg = json.loads(json.dumps(C.CONFIG))
    t0 = time.perf_counter()
    res = compute(cfg)
    if args.print_json:
        print(json.dumps(res))
        return 0
    exp = registry("ch3")[("ch3", "kdiffusion_comparison")]  # the record run_experiment would write
    record = {
        "chapter": exp.chapter, "name": exp.name, "description": exp.description, "command": exp.command,
        "config": exp.config, "results": json.loads(json.dumps(res)),
        "provenance": _provenance(time.perf_counter() - t0, int(cfg["threads"])),
    }
    path = result_path("ch3", "kdiffusion_comparison")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    for name, rows in res["summary"].items():
        for nfe, r in rows.items():
            print(name, nfe, json.dumps(r))
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
