"""Full run of chapters 1–4's digits denoiser: train it over seeds, keep the weights, measure it.

``digits_denoiser`` trains :func:`companion.denoiser.train_digits_denoiser` for each seed, writes
the EMA weights to ``results/ch3/digits_denoiser_seed<k>.pt`` (their checksums go in the result
file, so :func:`companion.denoiser.load_digits_denoiser` can refuse a mismatch), and measures each
model: the Fréchet distance to the held-out digits for every sampler and NFE of the config, the
memorisation ratio and the class balance of its samples.
"""

from __future__ import annotations

import time

from . import experiment

CONFIG = dict(
    model={},  # overrides of companion.denoiser.DIGITS_CONFIG (filled below with the full recipe)
    seeds=[0, 1, 2], sample_seed=3,
    runs=[["DDPM", 20], ["DDPM", 100], ["DDPM (β)", 20], ["DDPM (β)", 100],
          ["DDIM", 10], ["DDIM", 20], ["DDIM", 50], ["DDIM", 100],
          ["Euler", 20], ["Heun", 20], ["Heun", 40],
          ["DPM-Solver++(2M)", 10], ["DPM-Solver++(2M)", 20], ["DPM-Solver++(2M)", 40], ["DPM-Solver++(3M)", 20],
          ["UniPC-3", 10], ["UniPC-3", 20], ["UniPC-3", 40],
          ["Euler ancestral", 20], ["Euler ancestral", 50],
          ["DPM-Solver++(2M) SDE", 10], ["DPM-Solver++(2M) SDE", 20], ["DPM-Solver++(2M) SDE", 50]],
    check_runs=[["DDPM", 100], ["DDPM (β)", 100], ["DPM-Solver++(2M) SDE", 20]],
    workers=3, threads=1,
)


def _full_config() -> dict:
    from ..denoiser import DIGITS_CONFIG

    return {**CONFIG, "model": dict(DIGITS_CONFIG)}


def measure(model, cfg: dict) -> dict:
    """FD of every run, and memorisation / class balance of the ``check_runs``, for one model."""
    from .. import metrics
    from ..data import digits
    from ..denoiser import generate

    xtr, xte = digits("train")[0], digits("test")[0]
    n = len(xte)
    out: dict = {"fd": {}, "sample_seconds": {}, "memorisation": {}, "class_balance": {}}
    for sampler, nfe in cfg["runs"]:
        key = f"{sampler} {nfe}"
        t0 = time.perf_counter()
        x = generate(model, sampler, nfe, n, cfg["sample_seed"]).clamp(-1, 1)
        out["sample_seconds"][key] = round(time.perf_counter() - t0, 2)
        out["fd"][key] = metrics.digit_frechet_distance(x)
        if [sampler, nfe] in cfg["check_runs"]:
            out["memorisation"][key] = metrics.memorisation_ratio(x, xtr, xte)
            out["class_balance"][key] = metrics.digit_class_balance(x)
    return out


def _one_seed(args: tuple[int, dict]) -> tuple[dict, dict]:
    seed, cfg = args
    from ..denoiser import train_digits_denoiser

    t0 = time.perf_counter()
    fit = train_digits_denoiser(seed, progress=False, **cfg["model"])
    seconds = time.perf_counter() - t0
    rec = measure(fit.ema.eval(), cfg)
    rec["train_seconds"] = round(seconds, 1)
    rec["final_loss"] = sum(fit.losses[-200:]) / len(fit.losses[-200:])
    return {k: v.detach().clone() for k, v in fit.ema.state_dict().items()}, rec


@experiment("ch3", "digits_denoiser", config=_full_config(),
            description="digits denoiser (U-Net + preconditioning) over 3 seeds: weights, FD per sampler/NFE, memorisation, class balance")
def digits_denoiser(cfg: dict) -> dict:
    from .. import metrics
    from ..data import digits
    from . import map_seeds, save_weights

    xtr, xte = digits("train")[0], digits("test")[0]
    results: dict = {"floor": metrics.digit_frechet_distance(xtr[: len(xte)]), "weights_sha256": {}, "seeds": {}}
    outs = map_seeds(_one_seed, [(s, cfg) for s in cfg["seeds"]], workers=cfg["workers"], threads=cfg["threads"])
    for seed, (state, rec) in zip(cfg["seeds"], outs, strict=True):
        results["weights_sha256"][str(seed)] = save_weights("ch3", "digits_denoiser", seed, state)
        results["seeds"][str(seed)] = rec
    return results
