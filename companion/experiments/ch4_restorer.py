"""Full run of chapter 4's Cold-Diffusion restorer on digits: train it over seeds, keep the weights,
measure the naive and improved samplers.

``cold_restorer`` trains :func:`companion.denoiser.train_cold_restorer` per seed, writes the EMA
weights to ``results/ch4/cold_restorer_seed<k>.pt`` (checksums in the result file), and gives the
Fréchet distance to the held-out digits of the naive and improved samplers and of one-shot
restoration, all from the same Gaussian-fit start :math:`x_T`.
"""

from __future__ import annotations

import time

from . import experiment

CONFIG = dict(model={}, seeds=[0, 1, 2], fit_seed=1, start_seed=5, sampler_seed=3, workers=3, threads=1)


def _full_config() -> dict:
    from ..denoiser import COLD_CONFIG

    return {**CONFIG, "model": dict(COLD_CONFIG)}


def measure(restorer, cfg: dict) -> dict:
    """FD of the naive, improved and one-shot samplers for one restorer (chapter 4, section 5)."""
    import torch

    from .. import metrics
    from .. import unified as U
    from ..data import digits
    from ..denoiser import cold_blur

    blur = cold_blur(**cfg["model"])
    T = blur.T
    xtr, xte = digits("train")[0], digits("test")[0]
    start = U.GaussianFit(blur.corrupt(xtr, T, torch.Generator().manual_seed(cfg["fit_seed"])))
    x_T = start.sample(len(xte), cfg["start_seed"])
    restore = lambda x, t: restorer(x, float(t))  # noqa: E731
    with torch.no_grad():
        out = {
            "improved": U.cold_improved(restore, blur, x_T, range(T, -1, -1), generator=cfg["sampler_seed"]),
            "naive": U.cold_naive(restore, blur, x_T, range(T, -1, -1), generator=cfg["sampler_seed"]),
            "one-shot": restorer(x_T, float(T)),
        }
    return {k: metrics.digit_frechet_distance(v.clamp(-1, 1)) for k, v in out.items()}


def _one_seed(args: tuple[int, dict]) -> tuple[dict, dict]:
    seed, cfg = args
    from ..denoiser import train_cold_restorer

    t0 = time.perf_counter()
    fit = train_cold_restorer(seed, progress=False, **cfg["model"])
    seconds = time.perf_counter() - t0
    rec = {"fd": measure(fit.ema.eval(), cfg), "train_seconds": round(seconds, 1),
           "final_loss": sum(fit.losses[-200:]) / len(fit.losses[-200:])}
    return {k: v.detach().clone() for k, v in fit.ema.state_dict().items()}, rec


@experiment("ch4", "cold_restorer", config=_full_config(),
            description="Cold-Diffusion restorer (U-Net) for blurred digits over 3 seeds: weights, FD of naive/improved/one-shot")
def cold_restorer(cfg: dict) -> dict:
    from .. import metrics
    from ..data import digits
    from . import map_seeds, save_weights

    xtr, xte = digits("train")[0], digits("test")[0]
    results: dict = {"floor": metrics.digit_frechet_distance(xtr[: len(xte)]), "weights_sha256": {}, "seeds": {}}
    outs = map_seeds(_one_seed, [(s, cfg) for s in cfg["seeds"]], workers=cfg["workers"], threads=cfg["threads"])
    for seed, (state, rec) in zip(cfg["seeds"], outs, strict=True):
        results["weights_sha256"][str(seed)] = save_weights("ch4", "cold_restorer", seed, state)
        results["seeds"][str(seed)] = rec
    return results
