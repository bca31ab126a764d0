"""Full runs of the learned digits denoiser: train it over seeds, keep the weights, and measure every
claim the book makes about it under the statistics protocol of :mod:`companion.core.sample_quality`.

``digits_denoiser`` trains :func:`companion.recipes.denoiser.train_digits_denoiser` for each seed and writes
the EMA weights to ``results/ch5/digits_denoiser_seed<k>.pt`` (their checksums go in the result
file, so :func:`companion.recipes.denoiser.load_digits_denoiser` can refuse a mismatch).

``digits_claims`` loads those weights and, for every training seed and every sampler run the book
discusses, pools the samples of three held-out sample seeds (as many images as there are training
digits) and reports the pooled Fréchet distance against the floor at the same size, the per-seed
spread, the pooled class balance and the memorisation fraction; then each comparison the book
makes ("A beats B") is a paired bootstrap per training seed.
"""

from __future__ import annotations

import time
from typing import Any

from .runner import experiment

TRAIN = dict(
    model={},  # overrides of companion.recipes.denoiser.DIGITS_CONFIG (filled below with the full recipe)
    seeds=[0, 1, 2], workers=3, threads=1,
)

#: (label, sampler of companion.recipes.denoiser.generate, NFE, lower_order_final)
RUNS: list[list[Any]] = [
    ["DDPM 20", "DDPM", 20, None], ["DDPM 100", "DDPM", 100, None], ["DDPM (β) 100", "DDPM (β)", 100, None],
    ["DDIM 20", "DDIM", 20, None], ["DDIM 100", "DDIM", 100, None],
    ["reverse SDE (VP) 20", "reverse SDE (VP)", 20, None], ["reverse SDE (VP) 100", "reverse SDE (VP)", 100, None],
    ["predictor-corrector (VP) 20", "predictor-corrector (VP)", 20, None],
    ["predictor-corrector (VP) 100", "predictor-corrector (VP)", 100, None],
    ["probability-flow ODE (VP) 20", "probability-flow ODE (VP)", 20, None],
    ["probability-flow ODE (VP) 100", "probability-flow ODE (VP)", 100, None],
    ["Euler 20", "Euler", 20, None], ["Heun 40", "Heun", 40, None],
    ["DPM-Solver++(2M) 10", "DPM-Solver++(2M)", 10, None], ["DPM-Solver++(2M) 20", "DPM-Solver++(2M)", 20, None],
    ["DPM-Solver++(2M) 40", "DPM-Solver++(2M)", 40, None],
    ["UniPC-3 10", "UniPC-3", 10, None], ["UniPC-3 10, no lower-order final", "UniPC-3", 10, False],
    ["UniPC-3 20", "UniPC-3", 20, None],
    ["Euler ancestral 20", "Euler ancestral", 20, None], ["Euler ancestral 50", "Euler ancestral", 50, None],
    ["DPM-Solver++(2M) SDE 10", "DPM-Solver++(2M) SDE", 10, None],
    ["DPM-Solver++(2M) SDE 20", "DPM-Solver++(2M) SDE", 20, None],
    ["DPM-Solver++(2M) SDE 50", "DPM-Solver++(2M) SDE", 50, None],
]

#: the comparisons the book makes, (A, B): "A has the smaller FD" is claimed only if the paired
#: bootstrap says so on every training seed
COMPARISONS: list[list[str]] = [
    ["DDPM 20", "DDPM 100"], ["DDPM 100", "DDPM (β) 100"], ["DDPM 20", "DDIM 20"], ["DDPM 100", "DDIM 100"],
    ["reverse SDE (VP) 100", "probability-flow ODE (VP) 100"], ["probability-flow ODE (VP) 20", "reverse SDE (VP) 20"],
    ["predictor-corrector (VP) 100", "probability-flow ODE (VP) 100"],
    ["DPM-Solver++(2M) SDE 20", "DPM-Solver++(2M) 20"], ["DPM-Solver++(2M) SDE 50", "DPM-Solver++(2M) 40"],
    ["Euler ancestral 50", "DPM-Solver++(2M) 40"], ["DPM-Solver++(2M) 40", "DPM-Solver++(2M) 20"],
    ["UniPC-3 10", "UniPC-3 10, no lower-order final"], ["DPM-Solver++(2M) 10", "UniPC-3 10"],
]

#: each model draws its own three sample seeds: with shared starts, a lucky draw would favour all
#: three models at once and the spread over models would hide the spread over samples
CLAIMS = dict(
    train_seeds=[0, 1, 2], sample_seeds={"0": [1000, 1001, 1002], "1": [1010, 1011, 1012], "2": [1020, 1021, 1022]},
    n_per_seed=449, runs=RUNS, comparisons=COMPARISONS,
    n_boot=400, workers=3, threads=1,
)


def _full_config() -> dict:
    from ..recipes.denoiser import DIGITS_CONFIG

    return {**TRAIN, "model": dict(DIGITS_CONFIG)}


def _one_seed(args: tuple[int, dict]) -> tuple[dict, dict]:
    seed, cfg = args
    from ..recipes.denoiser import train_digits_denoiser

    t0 = time.perf_counter()
    fit = train_digits_denoiser(seed, progress=False, **cfg["model"])
    rec = {"train_seconds": round(time.perf_counter() - t0, 1),
           "final_loss": sum(fit.losses[-200:]) / len(fit.losses[-200:])}
    return {k: v.detach().clone() for k, v in fit.ema.state_dict().items()}, rec


@experiment("ch5", "digits_denoiser", config=_full_config(),
            description="digits denoiser (U-Net + preconditioning) over 3 seeds: kept weights, training time, final loss")
def digits_denoiser(cfg: dict) -> dict:
    from ..store import save_weights
    from .runner import map_seeds

    results: dict = {"weights_sha256": {}, "seeds": {}}
    outs = map_seeds(_one_seed, [(s, cfg) for s in cfg["seeds"]], workers=cfg["workers"], threads=cfg["threads"])
    for seed, (state, rec) in zip(cfg["seeds"], outs, strict=True):
        results["weights_sha256"][str(seed)] = save_weights("ch5", "digits_denoiser", seed, state)
        results["seeds"][str(seed)] = rec
    return results


def _claims_one_seed(args: tuple[int, dict]) -> dict:
    """Pooled report of every run and the paired comparisons, for one training seed."""
    import torch

    from ..core import sample_quality as Q
    from ..core.data import digits
    from ..recipes.denoiser import generate, load_digits_denoiser

    seed, cfg = args
    sample_seeds = cfg["sample_seeds"][str(seed)]
    model = load_digits_denoiser(seed)
    xtr, xte = digits("train")[0], digits("test")[0]
    n_pool = cfg["n_per_seed"] * len(sample_seeds)
    fl = Q.floor(min(n_pool, xtr.shape[0]))
    fr = Q.digit_features(xte)
    out: dict[str, Any] = {"floor": fl, "runs": {}, "comparisons": {}, "seconds": {}}
    pools: dict[str, list[torch.Tensor]] = {}
    for label, sampler, nfe, lof in cfg["runs"]:
        t0 = time.perf_counter()
        pools[label] = [generate(model, sampler, nfe, cfg["n_per_seed"], s, lower_order_final=lof).clamp(-1, 1)
                        for s in sample_seeds]
        out["seconds"][label] = round(time.perf_counter() - t0, 1)
        out["runs"][label] = Q.pooled_report(pools[label], train=xtr, test=xte, floor_fd=fl["fd"])
    feats = {k: Q.digit_features(torch.cat(v)) for k, v in pools.items()}
    for a, b in cfg["comparisons"]:
        out["comparisons"][f"{a} | {b}"] = Q.paired_bootstrap_fd(feats[a], feats[b], fr, n_boot=cfg["n_boot"],
                                                                generator=seed)
    return out


@experiment("ch5", "digits_claims", config=CLAIMS,
            description="every digits claim under the protocol: pooled FD of 3 held-out sample seeds against the floor "
                        "at the same size, seed spreads, class balance, memorisation, paired bootstraps; 3 training seeds")
def digits_claims(cfg: dict) -> dict:
    from .runner import map_seeds

    outs = map_seeds(_claims_one_seed, [(s, cfg) for s in cfg["train_seeds"]], workers=cfg["workers"],
                     threads=cfg["threads"])
    return {"seeds": {str(s): o for s, o in zip(cfg["train_seeds"], outs, strict=True)}}


NOISE = dict(train_seed=0, sample_seeds=list(range(2000, 2024)), n_per_seed=449, pool=3,
             runs=[["DPM-Solver++(2M) 20", "DPM-Solver++(2M)", 20], ["DPM-Solver++(2M) SDE 20", "DPM-Solver++(2M) SDE", 20]],
             floor_subsets=24, n_boot=400, threads=2)


@experiment("ch5", "fd_noise", config=NOISE,
            description="how noisy is the FD of a learned model: 24 sample seeds of 449 digits for two samplers, "
                        "pools of 3, random floors, and the paired bootstrap against the spread between pools")
def fd_noise(cfg: dict) -> dict:
    import torch

    from ..core import sample_quality as Q
    from ..core.data import digits
    from ..recipes.denoiser import generate, load_digits_denoiser

    model = load_digits_denoiser(cfg["train_seed"])
    xtr, xte = digits("train")[0], digits("test")[0]
    fr = Q.digit_features(xte)
    feats: dict[str, list] = {}
    out: dict[str, Any] = {"per_seed": {}, "pooled": {}}
    for label, sampler, nfe in cfg["runs"]:
        feats[label] = [Q.digit_features(generate(model, sampler, nfe, cfg["n_per_seed"], s).clamp(-1, 1))
                        for s in cfg["sample_seeds"]]
        out["per_seed"][label] = [Q.fd_features(f, fr) for f in feats[label]]
        k = cfg["pool"]
        out["pooled"][label] = [Q.fd_features(torch.cat(feats[label][i:i + k]), fr)
                                for i in range(0, len(feats[label]) - k + 1, k)]
    n_pool = cfg["n_per_seed"] * cfg["pool"]
    out["floor_per_seed_size"] = [Q.floor(cfg["n_per_seed"], generator=s, n_boot=10)["fd"]
                                  for s in range(cfg["floor_subsets"])]
    out["floor_pooled_size"] = Q.floor(min(n_pool, xtr.shape[0]), n_boot=10)["fd"]
    (a, _, _), (b, _, _) = cfg["runs"]
    diffs = [x - y for x, y in zip(out["pooled"][a], out["pooled"][b], strict=True)]
    boot = [Q.paired_bootstrap_fd(torch.cat(feats[a][i:i + k]), torch.cat(feats[b][i:i + k]), fr,
                                  n_boot=cfg["n_boot"], generator=i)["se"]
            for i in range(0, len(feats[a]) - k + 1, k)]
    out["pooled_differences"] = diffs
    out["bootstrap_se"] = boot
    return out
