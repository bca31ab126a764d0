"""The fast ODE samplers judged like for like: the companion's and k-diffusion's, each on its own grids.

``sampler_benchmark`` runs every sampler of both libraries on three ODEs whose end points are
known to high accuracy (DOP853 from the same starts): the exact ODEs of ``lab_1d`` and
``lab_2d`` and the learned ODE of the digits denoiser. Each sampler runs, at 10, 20 and 40 model
calls, on every grid k-diffusion ships (Karras ρ = 7; exponential, i.e. uniform in log σ, which
for this parameterisation *is* uniform log-SNR; polyexponential ρ = 2) and on a grid optimised
for that sampler (:func:`companion.diffusion.samplers.optimize_grid`) on *training* starts and judged on
*held-out* starts, with the time the optimisation took (on the digits, the most accurate samplers
of each library only: a network call costs more than a mixture's). The companion's exponential samplers
with the data's mean and variance as reference Gaussian ("with data moments", equation
``fast-coords``) are a separate column: they use information about the data that k-diffusion's
samplers do not. On the digits, the best configuration of each library is also judged by the
pooled Fréchet distance of its samples.

k-diffusion is never a dependency of the package: ``tools/compare_kdiffusion.py`` runs
:func:`benchmark` with k-diffusion's sampling module in a scratch environment
(``$KDIFFUSION_PYTHON``, default ``/tmp/kdenv/bin/python``, made by ``tools/kdiffusion_env.sh``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..store import repo_root
from .runner import experiment

CONFIG: dict[str, Any] = dict(
    laws=["lab_1d", "lab_2d", "digits"],
    n_test={"lab_1d": 2000, "lab_2d": 2000, "digits": 64}, workers=3,
    n_train={"lab_1d": 300, "lab_2d": 300, "digits": 32},
    seed_test=0, seed_train=1, sigma_min=2e-3, sigma_max=80.0, nfe=[10, 20, 40],
    ref_rtol={"lab_1d": 1e-12, "lab_2d": 1e-12, "digits": 1e-8},
    grids={"karras": 7.0, "exponential": None, "polyexponential": 2.0},
    companion=["Euler", "Heun", "LMS-4", "DPM-Solver++(2M)", "DPM-Solver-2M (taylor)", "DPM-Solver++(3M)",
               "UniPC-2", "UniPC-3"],
    with_moments=["DPM-Solver++(2M)", "DPM-Solver++(3M)", "UniPC-3"],
    kdiffusion=["euler", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_3m_sde(eta=0)"],
    knots=8, maxiter={"lab_1d": 1000, "lab_2d": 1000, "digits": 200},
    # the samplers whose grid is optimised (each fit costs maxiter x n_train x NFE model calls): on
    # the laboratories LMS, DPM-Solver++(2M) and a third-order solver of each library; on the learned
    # digits ODE, where one float64 network call at batch 32 costs ~45 ms on one core, the companion's
    # third-order solver and k-diffusion's DPM-Solver++(2M), its best sampler at 10 NFE
    optimise={law: ["LMS-4", "DPM-Solver++(2M)", "UniPC-3", "lms", "dpmpp_2m", "dpmpp_3m_sde(eta=0)"]
              for law in ("lab_1d", "lab_2d")} | {"digits": ["UniPC-3", "dpmpp_2m"]},
    fd_seeds=[200, 201, 202], fd_n=449, fd_ref_rtol=1e-6,
    # the laboratories run side by side with one torch thread each, then the digits ODE alone with two
    threads=1, digits_threads=2,
)


# ============================================================================ the ODEs
def digits_moments() -> tuple[torch.Tensor, float]:
    """Per-pixel mean ``(1, 8, 8)`` of the training digits and the root mean per-pixel variance:
    the reference Gaussian N(mu, s^2 I) "with data moments" of the digits."""
    from ..core.data import digits

    x = digits("train")[0].double()
    return x.mean(0), float(x.var(0).mean().sqrt())


def setup(cfg: dict, name: str) -> dict[str, Any]:
    """The denoiser of one ODE (float64), its reference Gaussian, and the test and training starts
    with their DOP853 end points at ``sigma_min``."""
    from ..diffusion import samplers as S

    smax, smin = cfg["sigma_max"], cfg["sigma_min"]
    if name == "digits":
        from ..recipes.denoiser import load_digits_denoiser

        model = load_digits_denoiser(0).double()

        @torch.no_grad()
        def den(x, sigma):
            return model.denoise(x, sigma)

        mu, sd = digits_moments()
        shape: tuple[int, ...] = (1, 8, 8)
        draw = lambda n, seed: smax * torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed),
                                                   dtype=torch.float64)
    else:
        from ..core import gmm

        gm = {"lab_1d": gmm.lab_1d, "lab_2d": gmm.lab_2d}[name]()
        den = S.gmm_denoiser(gm)
        mu, sd = gm.mean(), float((torch.trace(gm.covariance()) / gm.dim).sqrt())
        draw = lambda n, seed: gm.noised(1, smax).sample(n, seed)
    out: dict[str, Any] = {"denoiser": den, "ref_mean": mu, "ref_std": sd}
    for part, seed in (("test", cfg["seed_test"]), ("train", cfg["seed_train"])):
        x = draw(cfg[f"n_{part}"][name], seed)
        tol = cfg["ref_rtol"][name]
        ref, info = S.reference_solution(den, x, smax, smin, rtol=tol, atol=tol)
        out[part] = (x, ref)
        out[f"ref_nfe_{part}"] = info["nfe"]
    return out


# ============================================================================ grids
def shipped_grid(cfg: dict, kind: str, steps: int) -> torch.Tensor:
    """k-diffusion's grid families, ending at ``sigma_min`` (no appended zero): ``(steps + 1,)``."""
    from ..diffusion import ode

    smin, smax = cfg["sigma_min"], cfg["sigma_max"]
    if kind == "karras":
        return ode.sigma_grid(steps, smin, smax, rho=cfg["grids"]["karras"])
    ramp = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    if kind == "polyexponential":
        ramp = ramp ** cfg["grids"]["polyexponential"]
    elif kind != "exponential":
        raise ValueError(f"unknown grid {kind!r}")
    g = torch.exp(ramp * (math.log(smax) - math.log(smin)) + math.log(smin))
    g[0], g[-1] = smax, smin
    return g


def warp_of(cfg: dict, kind: str) -> np.ndarray | None:
    """The log step density of a shipped grid for :func:`companion.diffusion.samplers.warped_grid` (the
    start of the optimisation), where it is exact: Karras and exponential."""
    from ..diffusion import samplers as S

    if kind == "karras":
        return S.karras_warp(cfg["knots"], cfg["sigma_min"], cfg["sigma_max"], cfg["grids"]["karras"])
    if kind == "exponential":
        return np.zeros(cfg["knots"])
    return None


# ============================================================================ samplers
Runner = Callable[[Callable, torch.Tensor, torch.Tensor], torch.Tensor]


def companion_samplers(lab: dict, moments: bool = False) -> dict[str, tuple[Runner, int]]:
    """Name -> (``run(denoiser, x, grid) -> x``, model calls per step)."""
    from ..diffusion import samplers as S

    kw = {"ref_mean": lab["ref_mean"], "ref_std": lab["ref_std"]} if moments else {}
    table: dict[str, tuple[Runner, int]] = {
        "Euler": (lambda d, x, g: S.sample_euler_ancestral(d, x, g, generator=0, eta=0.0)[0], 1),
        "Heun": (lambda d, x, g: S.sample_heun_churn(d, x, g)[0], 2),
        "LMS-4": (lambda d, x, g: S.sample_lms(d, x, g)[0], 1),
        "DPM-Solver++(2M)": (lambda d, x, g: S.sample_dpmpp_2m(d, x, g, **kw)[0], 1),
        "DPM-Solver-2M (taylor)": (lambda d, x, g: S.sample_dpmpp_2m_taylor(d, x, g, **kw)[0], 1),
        "DPM-Solver++(3M)": (lambda d, x, g: S.sample_dpmpp_3m(d, x, g, **kw)[0], 1),
        "UniPC-2": (lambda d, x, g: S.sample_unipc(d, x, g, order=2, **kw)[0], 1),
        "UniPC-3": (lambda d, x, g: S.sample_unipc(d, x, g, order=3, **kw)[0], 1),
    }
    return table


class KModel:
    """k-diffusion's model interface ``model(x, sigma * s_in) -> denoised`` over a denoiser of
    one noise level per call, counting the calls."""

    def __init__(self, denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma, **_):
        self.nfe += 1
        s = sigma.reshape(-1)
        if s.numel() > 1 and not bool((s == s[0]).all()):
            raise ValueError("per-sample noise levels are not supported by this wrapper")
        return self.denoiser(x, float(s[0]))


def kdiffusion_samplers(K) -> dict[str, tuple[Runner, int]]:
    """k-diffusion's deterministic fixed-grid samplers, same interface as :func:`companion_samplers`."""
    q = dict(disable=True)

    def wrap(fn):
        return lambda d, x, g: fn(KModel(d), x.clone(), g)

    return {
        "euler": (wrap(lambda m, x, g: K.sample_euler(m, x, g, **q)), 1),
        "heun": (wrap(lambda m, x, g: K.sample_heun(m, x, g, **q)), 2),
        "dpm_2": (wrap(lambda m, x, g: K.sample_dpm_2(m, x, g, **q)), 2),
        "lms": (wrap(lambda m, x, g: K.sample_lms(m, x, g, **q)), 1),
        "dpmpp_2m": (wrap(lambda m, x, g: K.sample_dpmpp_2m(m, x, g, **q)), 1),
        "dpmpp_3m_sde(eta=0)": (wrap(lambda m, x, g: K.sample_dpmpp_3m_sde(m, x, g, eta=0.0, **q)), 1),
    }


class _Count:
    def __init__(self, fn):
        self.fn, self.nfe = fn, 0

    def __call__(self, x, sigma):
        self.nfe += 1
        return self.fn(x, sigma)


# ============================================================================ the table
def _steps(nfe: int, per_step: int) -> int | None:
    return nfe // per_step if nfe % per_step == 0 and nfe // per_step >= 1 else None


def sampler_rows(cfg: dict, name: str, lab: dict, family: str, table: dict[str, tuple[Runner, int]],
                 names: list[str]) -> dict[str, Any]:
    """For each sampler and NFE: the held-out pathwise error on every shipped grid and on the grid
    optimised on the training starts (initialised from its best shipped grid), with the
    optimisation's cost."""
    from ..diffusion import samplers as S

    den = lab["denoiser"]
    (x, ref), (xt, reft) = lab["test"], lab["train"]
    rows: dict[str, Any] = {}
    for sname in names:
        run, per_step = table[sname]
        for nfe in cfg["nfe"]:
            steps = _steps(nfe, per_step)
            if steps is None:
                continue
            row: dict[str, Any] = {"family": family, "sampler": sname, "nfe": nfe, "grids": {}}
            for kind in cfg["grids"]:
                counted = _Count(den)
                y = run(counted, x, shipped_grid(cfg, kind, steps))
                if counted.nfe != nfe:
                    raise AssertionError(f"{sname}: {counted.nfe} model calls, expected {nfe}")
                row["grids"][kind] = S.pathwise_error(y, ref)
            rows[f"{family}: {sname} @{nfe}"] = row
            if sname not in cfg["optimise"][name]:
                continue
            start = min((k for k in cfg["grids"] if warp_of(cfg, k) is not None), key=lambda k: row["grids"][k])
            t0 = time.perf_counter()
            grid, info = S.optimize_grid(lambda d, xx, g, run=run: (run(d, xx, g), {}), den, xt, reft, steps,
                                         sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"], knots=cfg["knots"],
                                         init=warp_of(cfg, start), maxiter=cfg["maxiter"][name])
            row["optimise_seconds"] = round(time.perf_counter() - t0, 1)
            row["optimise_evals"] = info["evals"]
            row["optimise_start"] = start
            row["grids"]["optimised"] = S.pathwise_error(run(den, x, grid), ref)
            row["optimised_grid"] = [float(s) for s in grid]
    return rows


def best(rows: dict[str, Any], nfe: int, family: str, grids: list[str]) -> tuple[str, str, float]:
    """(sampler, grid, error) of the smallest held-out error of one family at one NFE."""
    cands = [(r["sampler"], g, r["grids"][g]) for r in rows.values()
             if r["family"] == family and r["nfe"] == nfe for g in grids if g in r["grids"]]
    return min(cands, key=lambda c: c[2])


def summary(cfg: dict, results: dict[str, Any]) -> dict[str, Any]:
    """Per ODE and NFE: k-diffusion's best sampler on its best shipped grid; the companion's best
    without data moments on shipped grids only and with its grid tooling; the best with data
    moments; and the ratios to k-diffusion's best."""
    shipped = list(cfg["grids"])
    out: dict[str, Any] = {}
    for name, rows in results.items():
        per: dict[str, Any] = {}
        for nfe in cfg["nfe"]:
            kd = best(rows, nfe, "k-diffusion", shipped)
            fixed = best(rows, nfe, "companion", shipped)
            tooled = best(rows, nfe, "companion", shipped + ["optimised"])
            mom = best(rows, nfe, "companion with data moments", shipped + ["optimised"])
            kd_opt = best(rows, nfe, "k-diffusion", shipped + ["optimised"])
            per[str(nfe)] = {
                "kdiffusion": kd, "companion_fixed": fixed, "companion": tooled, "companion_moments": mom,
                "kdiffusion_optimised": kd_opt,
                "ratio_fixed": fixed[2] / kd[2], "ratio": tooled[2] / kd[2], "ratio_moments": mom[2] / kd[2],
            }
        out[name] = per
    return out


def pooled_fd(cfg: dict, runs: dict[str, tuple[Runner, torch.Tensor]]) -> dict[str, Any]:
    """Pooled FD (3 sample seeds) of chosen (sampler, grid) runs on the digits, in float32, and of
    the learned ODE's own end points (DOP853 at ``fd_ref_rtol``) from the same starts."""
    from ..core import sample_quality as Q
    from ..diffusion import samplers as S
    from ..recipes.denoiser import load_digits_denoiser

    model = load_digits_denoiser(0)

    @torch.no_grad()
    def den(x, sigma):
        return model.denoise(x, sigma)

    starts = [cfg["sigma_max"] * torch.randn(cfg["fd_n"], 1, 8, 8, generator=torch.Generator().manual_seed(s))
              for s in cfg["fd_seeds"]]
    out: dict[str, Any] = {}
    fl = Q.floor(sum(x.shape[0] for x in starts))["fd"]
    for key, (run, grid) in runs.items():
        xs = [run(den, x, grid.to(torch.float32)).clamp(-1, 1) for x in starts]
        out[key] = Q.pooled_report(xs, floor_fd=fl)
    model64 = load_digits_denoiser(0).double()  # the reference solves in float64

    @torch.no_grad()
    def den64(x, sigma):
        return model64.denoise(x, sigma)

    ends = [S.reference_solution(den64, x.double(), cfg["sigma_max"], cfg["sigma_min"], rtol=cfg["fd_ref_rtol"],
                                 atol=cfg["fd_ref_rtol"])[0].float().clamp(-1, 1) for x in starts]
    out["learned ODE (DOP853)"] = Q.pooled_report(ends, floor_fd=fl)
    return out


def law_rows(cfg: dict, name: str, K=None) -> dict[str, Any]:
    """Every sampler's rows on one ODE (:func:`sampler_rows` for each family)."""
    torch.set_num_threads(int(cfg.get("digits_threads" if name == "digits" else "threads", 1)))
    lab = setup(cfg, name)
    rows = sampler_rows(cfg, name, lab, "companion", companion_samplers(lab), cfg["companion"])
    rows.update(sampler_rows(cfg, name, lab, "companion with data moments", companion_samplers(lab, True),
                             cfg["with_moments"]))
    if K is not None:
        rows.update(sampler_rows(cfg, name, lab, "k-diffusion", kdiffusion_samplers(K), cfg["kdiffusion"]))
    return {"rows": rows, "reference_nfe": lab["ref_nfe_test"]}


def finish(cfg: dict, per_law: dict[str, dict], K=None) -> dict[str, Any]:
    """Assemble the per-ODE rows, the summary, and the pooled FD of each library's best digits runs."""
    results = {name: r["rows"] for name, r in per_law.items()}
    out: dict[str, Any] = {"rows": results, "reference_nfe": {n: r["reference_nfe"] for n, r in per_law.items()}}
    if K is None:
        return out
    out["summary"] = summary(cfg, results)
    if "digits" in results:
        lab = {"ref_mean": digits_moments()[0], "ref_std": digits_moments()[1]}
        tables = {"companion": companion_samplers(lab), "k-diffusion": kdiffusion_samplers(K)}
        runs = {}
        for nfe, s in out["summary"]["digits"].items():
            for fam, key in (("companion", "companion"), ("k-diffusion", "kdiffusion")):
                sname, gname, _ = s[key]
                row = results["digits"][f"{fam}: {sname} @{nfe}"]
                steps = _steps(int(nfe), tables[fam][sname][1])
                if gname == "optimised":
                    grid = torch.tensor(row["optimised_grid"], dtype=torch.float64)
                else:
                    assert steps is not None, f"{sname} @{nfe}: a shipped grid needs a whole number of steps"
                    grid = shipped_grid(cfg, gname, steps)
                runs[f"{fam}: {sname}, {gname} grid @{nfe}"] = (tables[fam][sname][0], grid)
        out["digits_fd"] = pooled_fd(cfg, runs)
    return out


def benchmark(cfg: dict, K=None) -> dict[str, Any]:
    """The whole comparison in one process; ``K`` is k-diffusion's ``sampling`` module (``None``:
    companion only). ``tools/compare_kdiffusion.py`` runs the ODEs in parallel processes instead."""
    return finish(cfg, {name: law_rows(cfg, name, K) for name in cfg["laws"]}, K)


def kdiffusion_python() -> str:
    return os.environ.get("KDIFFUSION_PYTHON", "/tmp/kdenv/bin/python")


@experiment("ch5", "sampler_benchmark", config=CONFIG,
            description="every ODE sampler of the companion and k-diffusion on lab_1d, lab_2d and the learned digits "
                        "ODE, each on k-diffusion's grids and its own optimised grid (needs a scratch env with k-diffusion)")
def sampler_benchmark(cfg: dict) -> dict:
    py = kdiffusion_python()
    if not os.path.exists(py):  # make the scratch environment (PyPI only; the package never imports it)
        made = subprocess.run(["bash", str(repo_root() / "tools" / "kdiffusion_env.sh")], capture_output=True,
                              text=True, check=False, env={**os.environ, "KDIFFUSION_ENV": str(Path(py).parents[1])})
        if made.returncode != 0 or not os.path.exists(py):
            raise FileNotFoundError(
                f"{py} not found and tools/kdiffusion_env.sh could not make it:\n{made.stderr[-2000:]}")
    out = subprocess.run([py, str(repo_root() / "tools" / "compare_kdiffusion.py"), "--print-json"],
                         capture_output=True, text=True, check=False, cwd=repo_root())
    if out.returncode != 0:
        raise RuntimeError(f"tools/compare_kdiffusion.py failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
