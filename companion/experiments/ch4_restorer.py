"""Full run of chapter 4's Cold-Diffusion restorer on digits: train it over seeds, keep the weights,
measure the naive and improved samplers.

``cold_restorer`` trains :func:`companion.recipes.denoiser.train_cold_restorer` per seed, writes the EMA
weights to ``results/ch4/cold_restorer_seed<k>.pt`` (checksums in the result file), and measures
the naive and improved samplers and one-shot restoration under the protocol of
:mod:`companion.core.sample_quality`: each from the same Gaussian-fit starts :math:`x_T` of three held-out
sample seeds, pooled, against the floor at the pooled size, with a paired bootstrap of improved
against naive.
"""

from __future__ import annotations

import time

from .runner import experiment

CONFIG = dict(model={}, seeds=[0, 1, 2], fit_seed=1, sample_seeds=[1000, 1001, 1002], n_per_seed=449, n_boot=400,
              workers=3, threads=1)


def _full_config() -> dict:
    from ..recipes.denoiser import COLD_CONFIG

    return {**CONFIG, "model": dict(COLD_CONFIG)}


def measure(restorer, cfg: dict, seed: int = 0) -> dict:
    """Pooled reports of the naive, improved and one-shot samplers for one restorer (chapter 4,
    section 5), and the paired bootstrap of improved against naive."""
    import torch

    from ..core import sample_quality as Q
    from ..core.data import digits
    from ..diffusion import unified as U
    from ..recipes.denoiser import cold_blur

    blur = cold_blur(**cfg["model"])
    T = blur.T
    xtr, xte = digits("train")[0], digits("test")[0]
    start = U.GaussianFit(blur.corrupt(xtr, T, torch.Generator().manual_seed(cfg["fit_seed"])))
    restore = lambda x, t: restorer(x, float(t))  # noqa: E731
    pools: dict[str, list] = {"improved": [], "naive": [], "one-shot": []}
    with torch.no_grad():
        for s in cfg["sample_seeds"]:
            x_T = start.sample(cfg["n_per_seed"], s)
            pools["improved"].append(U.cold_improved(restore, blur, x_T, range(T, -1, -1), generator=s).clamp(-1, 1))
            pools["naive"].append(U.cold_naive(restore, blur, x_T, range(T, -1, -1), generator=s).clamp(-1, 1))
            pools["one-shot"].append(restorer(x_T, float(T)).clamp(-1, 1))
    fl = Q.floor(min(cfg["n_per_seed"] * len(cfg["sample_seeds"]), xtr.shape[0]))
    out: dict = {"floor": fl, "runs": {k: Q.pooled_report(v, train=xtr, test=xte, floor_fd=fl["fd"])
                                        for k, v in pools.items()}}
    out["improved | naive"] = Q.compare(pools["improved"], pools["naive"], n_boot=cfg["n_boot"], generator=seed)
    return out


def _one_seed(args: tuple[int, dict]) -> tuple[dict, dict]:
    seed, cfg = args
    from ..recipes.denoiser import train_cold_restorer

    t0 = time.perf_counter()
    fit = train_cold_restorer(seed, progress=False, **cfg["model"])
    seconds = time.perf_counter() - t0
    rec = {"claims": measure(fit.ema.eval(), cfg, seed), "train_seconds": round(seconds, 1),
           "final_loss": sum(fit.losses[-200:]) / len(fit.losses[-200:])}
    return {k: v.detach().clone() for k, v in fit.ema.state_dict().items()}, rec


@experiment("ch4", "cold_restorer", config=_full_config(),
            description="Cold-Diffusion restorer (U-Net) for blurred digits over 3 seeds: weights; naive, improved and "
                        "one-shot samplers on pooled held-out sample seeds against the floor, paired bootstrap")
def cold_restorer(cfg: dict) -> dict:
    from ..store import save_weights
    from .runner import map_seeds

    results: dict = {"weights_sha256": {}, "seeds": {}}
    outs = map_seeds(_one_seed, [(s, cfg) for s in cfg["seeds"]], workers=cfg["workers"], threads=cfg["threads"])
    for seed, (state, rec) in zip(cfg["seeds"], outs, strict=True):
        results["weights_sha256"][str(seed)] = save_weights("ch4", "cold_restorer", seed, state)
        results["seeds"][str(seed)] = rec
    return results
