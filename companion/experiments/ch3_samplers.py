"""Full runs of chapter 3 (fast samplers): the companion's ODE samplers against k-diffusion's.

``kdiffusion_comparison`` runs both libraries in one process, on the same grids, the same starts
``x_T`` and the same float64 exact denoiser, with NFE counted as model calls. k-diffusion is
never a dependency of the package: the experiment runs ``tools/compare_kdiffusion.py`` with the
interpreter of a scratch environment that has it (``$KDIFFUSION_PYTHON``, default
``/tmp/kdenv/bin/python``; the tool's docstring says how to make one). The companion's half of
the computation is here, so the tool and the notebook share it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import experiment, repo_root

CONFIG = dict(
    laws=["lab_1d", "lab_2d"], n=4000, n_train=1000, seed_test=0, seed_train=1,
    sigma_min=2e-3, sigma_max=80.0, rho=7.0, nfe=[10, 20, 40], ref_rtol=1e-12,
    opt_law="lab_2d", opt_samplers=["UniPC-3 G", "DPM++(2M) G", "LMS-4"], knots=8, maxiter=600,
    adaptive_tols=[0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001], atol_ratio=0.156,
    overhead_nfe=40, overhead_repeats=5, threads=1,
)


def law(name: str):
    from .. import gmm

    return {"lab_1d": gmm.lab_1d, "lab_2d": gmm.lab_2d}[name]()


def setup(cfg: dict, name: str) -> dict:
    """The law, its exact denoiser, its reference Gaussian, test and training starts and their
    DOP853 end points (eq. ``ode-sigma``)."""
    from .. import samplers as S

    gm = law(name)
    den = S.gmm_denoiser(gm)
    out = {"gm": gm, "denoiser": den, "ref_mean": gm.mean(),
           "ref_std": float((torch.trace(gm.covariance()) / gm.dim).sqrt())}
    for part, n, seed in (("test", cfg["n"], cfg["seed_test"]), ("train", cfg["n_train"], cfg["seed_train"])):
        x = gm.noised(1, cfg["sigma_max"]).sample(n, seed)
        ref, info = S.reference_solution(den, x, cfg["sigma_max"], cfg["sigma_min"], rtol=cfg["ref_rtol"],
                                         atol=cfg["ref_rtol"])
        out[part] = (x, ref)
        out[f"ref_nfe_{part}"] = info["nfe"]
    return out


def companion_samplers(lab: dict) -> dict[str, tuple[Callable, int]]:
    """Name -> (``f(denoiser, x, sigmas) -> (x, info)``, model calls per step) for one law."""
    from .. import ode
    from .. import samplers as S

    gm = lab["gm"]
    score = ode.gmm_score_fn(gm)
    mu, sd = lab["ref_mean"], lab["ref_std"]

    def via_score(fn):
        return lambda den, x, g: fn(score, x, g)

    return {
        "Euler": (via_score(ode.sample_euler), 1),
        "Heun": (via_score(ode.sample_heun), 2),
        "RK4": (via_score(ode.sample_rk4), 4),
        "LMS-4": (S.sample_lms, 1),
        "DPM++(2M)": (S.sample_dpmpp_2m, 1),
        "DPM++(3M)": (S.sample_dpmpp_3m, 1),
        "UniPC-2": (lambda d, x, g: S.sample_unipc(d, x, g, order=2), 1),
        "UniPC-3": (lambda d, x, g: S.sample_unipc(d, x, g, order=3), 1),
        "DPM++(2M) G": (lambda d, x, g: S.sample_dpmpp_2m(d, x, g, ref_mean=mu, ref_std=sd), 1),
        "DPM++(3M) G": (lambda d, x, g: S.sample_dpmpp_3m(d, x, g, ref_mean=mu, ref_std=sd), 1),
        "UniPC-2 G": (lambda d, x, g: S.sample_unipc(d, x, g, order=2, ref_mean=mu, ref_std=sd), 1),
        "UniPC-3 G": (lambda d, x, g: S.sample_unipc(d, x, g, order=3, ref_mean=mu, ref_std=sd), 1),
    }


def karras(cfg: dict, steps: int) -> torch.Tensor:
    from .. import ode

    return ode.sigma_grid(steps, cfg["sigma_min"], cfg["sigma_max"], cfg["rho"])


def fixed_step_table(cfg: dict, labs: dict, grids: dict) -> dict:
    """Pathwise errors of every companion sampler at every NFE, on the Karras grid and on the
    optimised grids (``grids[(sampler, nfe)]``; samplers with one call per step only)."""
    from .. import samplers as S

    out = {}
    for name, lab in labs.items():
        x, ref = lab["test"]
        rows = {}
        for sname, (fn, per_step) in companion_samplers(lab).items():
            for nfe in cfg["nfe"]:
                if nfe % per_step:
                    continue
                y, info = fn(lab["denoiser"], x, karras(cfg, nfe // per_step))
                assert info["nfe"] == nfe, (sname, info["nfe"], nfe)
                rows[f"{sname} @{nfe}"] = S.pathwise_error(y, ref)
                if (sname, nfe) in grids:
                    y, _ = fn(lab["denoiser"], x, grids[sname, nfe])
                    rows[f"{sname} opt @{nfe}"] = S.pathwise_error(y, ref)
        out[name] = rows
    return out


def optimise_grids(cfg: dict, labs: dict) -> tuple[dict, dict]:
    """Grids optimised on the *training* starts of ``cfg['opt_law']`` (never on the test starts)."""
    from .. import samplers as S

    lab = labs[cfg["opt_law"]]
    xs, ref = lab["train"]
    fns = companion_samplers(lab)
    grids, info = {}, {}
    for sname in cfg["opt_samplers"]:
        for nfe in cfg["nfe"]:
            t0 = time.perf_counter()
            g, inf = S.optimize_grid(fns[sname][0], lab["denoiser"], xs, ref, nfe, sigma_min=cfg["sigma_min"],
                                     sigma_max=cfg["sigma_max"], knots=cfg["knots"], maxiter=cfg["maxiter"])
            grids[sname, nfe] = g
            info[f"{sname} @{nfe}"] = {"train_error_karras": inf["error_init"], "train_error_opt": inf["error"],
                                       "evals": inf["evals"], "seconds": round(time.perf_counter() - t0, 1),
                                       "params": inf["params"], "grid": [float(s) for s in g]}
    return grids, info


def adaptive_sweep(cfg: dict, labs: dict) -> dict:
    """Error and NFE of the companion's adaptive solvers over the tolerance sweep."""
    from .. import ode
    from .. import samplers as S

    out = {}
    for name, lab in labs.items():
        x, ref = lab["test"]
        rows = {}
        for tol in cfg["adaptive_tols"]:
            atol = tol * cfg["atol_ratio"]
            for meth in ("singlestep", "multistep"):
                for tag, kw in (("", {}), (" G", {"ref_mean": lab["ref_mean"], "ref_std": lab["ref_std"]})):
                    y, info = S.sample_dpm_adaptive(lab["denoiser"], x, cfg["sigma_max"], cfg["sigma_min"],
                                                    rtol=tol, atol=atol, method=meth, **kw)
                    rows.setdefault(f"{meth}{tag}", []).append(
                        {"rtol": tol, "nfe": info["nfe"], "error": S.pathwise_error(y, ref)})
            y, info = ode.sample_adaptive(ode.gmm_score_fn(lab["gm"]), x, cfg["sigma_max"], cfg["sigma_min"],
                                          rtol=tol, atol=atol)
            rows.setdefault("DOPRI5", []).append({"rtol": tol, "nfe": info["nfe"], "error": S.pathwise_error(y, ref)})
        out[name] = rows
    return out


class TimedDenoiser:
    """Wrap a denoiser and add up the seconds spent inside it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, x, sigma):
        t0 = time.perf_counter()
        out = self.fn(x, sigma)
        self.seconds += time.perf_counter() - t0
        return out


def overhead(run: Callable[[Callable], object], denoiser: Callable, repeats: int) -> dict:
    """Sampler overhead: (wall time − time in the model) / time in the model, best of ``repeats``."""
    best = None
    for _ in range(repeats):
        td = TimedDenoiser(denoiser)
        t0 = time.perf_counter()
        run(td)
        total = time.perf_counter() - t0
        r = (total - td.seconds) / td.seconds
        if best is None or r < best[0]:
            best = (r, total, td.seconds)
    return {"overhead": best[0], "seconds": best[1], "model_seconds": best[2]}


def models_for_overhead(lab: dict) -> dict[str, Callable]:
    """The exact mixture denoiser (the cheapest model there is) and a small untrained MLP
    denoiser of the chapter's size (``ScoreNet(TimeMLP(2, 128, 3))``), both float64."""
    from .. import nets, ode

    torch.manual_seed(0)
    net = ode.ScoreNet(nets.TimeMLP(dim=lab["gm"].dim, hidden=128, depth=3), sigma_data=1.5).double().eval()

    def mlp(x, sigma):
        with torch.no_grad():
            return net.denoise(x, sigma)

    return {"exact": lab["denoiser"], "mlp": mlp}


def companion_overhead(cfg: dict, labs: dict) -> dict:
    lab = labs["lab_2d"]
    x, _ = lab["test"]
    out = {}
    for mname, model in models_for_overhead(lab).items():
        for sname in ("LMS-4", "DPM++(2M)", "DPM++(3M) G", "UniPC-3 G"):
            fn, per_step = companion_samplers(lab)[sname]
            g = karras(cfg, cfg["overhead_nfe"] // per_step)
            out[f"{sname} / {mname}"] = overhead(lambda d, fn=fn, g=g: fn(d, x, g), model, cfg["overhead_repeats"])
    return out


def companion_part(cfg: dict) -> tuple[dict, dict, dict]:
    """Everything of the comparison that needs only the companion: (labs, grids, results)."""
    torch.set_num_threads(int(cfg.get("threads", 1)))
    labs = {name: setup(cfg, name) for name in cfg["laws"]}
    grids, grid_info = optimise_grids(cfg, labs)
    res = {
        "reference_nfe": {n: lab["ref_nfe_test"] for n, lab in labs.items()},
        "ref_std": {n: lab["ref_std"] for n, lab in labs.items()},
        "companion": fixed_step_table(cfg, labs, grids),
        "optimised_grids": grid_info,
        "companion_adaptive": adaptive_sweep(cfg, labs),
        "companion_overhead": companion_overhead(cfg, labs),
    }
    return labs, grids, res


def kdiffusion_python() -> str:
    return os.environ.get("KDIFFUSION_PYTHON", "/tmp/kdenv/bin/python")


@experiment("ch3", "kdiffusion_comparison", config=CONFIG,
            description="companion's fast ODE samplers vs k-diffusion's at 10/20/40 NFE (needs a scratch env with k-diffusion)")
def kdiffusion_comparison(cfg: dict) -> dict:
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

