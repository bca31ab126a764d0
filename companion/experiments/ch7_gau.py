"""Full runs of chapter 7 (gated attention units): the reversal experiment over seeds, depths and
learning rates, with budgets long enough for every arm to converge or clearly not.

Every run is :func:`companion.sequence.gau.reversal_arm` (model seed ``s``, data seed ``s + 1``, Adam at a
constant learning rate after an optional linear warmup, no clipping), the function the chapter's
notebook calls for its own short run. Sequences of length 16, vocabulary 16 (chance loss
:math:`\\ln 15`), width 64, batch 32.

* ``comparison`` — the chapter's setting (learning rate 2e-3): std-12, gau-24, std-12 with a
  50-step linear warmup, std-12 with DeepNorm; 600 steps, model seeds 0, 1, 2.
* ``lr_sweep`` — std-12 without and with the 50-step warmup and gau-24 at learning rates 5e-4,
  1e-3 and 4e-3 (the 2e-3 column is ``comparison``); 600 steps, seeds 0, 1, 2.
* ``depth_sweep`` — standard stacks of 2 to 12 layers and GAU stacks of 24 to 96 layers at the
  learning rate 2e-3 without warmup; 400 steps, seeds 0, 1, 2; with each stack's mean initial
  branch ratio and the relative change of its last hidden states after the first Adam step
  (:func:`companion.sequence.gau.first_step_change`), the two sides of the depth estimate.

Each run records its final loss (mean of the last 20 training losses), its accuracy on 256
fresh sequences, the steps it needs to bring the 20-step running mean of the training loss
under each threshold of ``config["thresholds"]`` (``None``: not within the budget, see
:func:`companion.sequence.gau.steps_to_threshold`), and its loss curve as means over blocks of 10 steps.
Runs are spread over ``workers`` processes with one torch thread each, so the numbers do not
depend on how the runs are scheduled.
"""

from __future__ import annotations

import math
from typing import Any

from .runner import experiment

# (label, kind, layers, warmup?, deepnorm): the warmup length comes from the configuration
ARMS: list[tuple[str, str, int, bool, bool]] = [
    ("std-12", "std", 12, False, False),
    ("gau-24", "gau", 24, False, False),
    ("std-12 + warmup", "std", 12, True, False),
    ("std-12 + DeepNorm", "std", 12, False, True),
]

#: the notebook's short run: the first 100 steps of ``comparison``'s model seed 0 (the arms without warmup)
SMALL = dict(length=16, lr=2e-3, steps=100, warmup=50)

COMPARISON = dict(length=16, lr=2e-3, steps=600, warmup=50, seeds=[0, 1, 2], thresholds=[1.0, 0.1],
                  window=20, block=10, workers=2, threads=1)
LR_SWEEP = dict(length=16, lrs=[5e-4, 1e-3, 4e-3], arms=["std-12", "std-12 + warmup", "gau-24"], steps=600,
                warmup=50, seeds=[0, 1, 2], thresholds=[1.0, 0.1], window=20, block=10, workers=2, threads=1)
DEPTH_SWEEP = dict(length=16, lr=2e-3, std_layers=[2, 4, 6, 8, 12], gau_layers=[24, 32, 48, 96], steps=400,
                   seeds=[0, 1, 2], thresholds=[1.0, 0.1], window=20, block=10, probe_batch=32, probe_seed=1,
                   workers=2, threads=1)

_ARM = {label: (kind, layers, warm, dn) for label, kind, layers, warm, dn in ARMS}


def _cost(job: dict[str, Any]) -> float:
    """Rough CPU cost of a job (for scheduling the longest first): layers x per-layer cost x steps."""
    return job["layers"] * (2.0 if job["kind"] == "std" else 1.0) * job["steps"]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training run: ``job`` holds the keyword arguments of :func:`companion.sequence.gau.reversal_arm`
    (``kind, layers, length, lr, steps, warmup, deepnorm, seed``) plus ``thresholds``, ``window``,
    ``block`` and, optionally, ``probe_batch``/``probe_seed`` (measure the initial branch ratio and
    the first Adam step's change on a batch of that size). Module-level, so it can run in a worker."""
    import numpy as np
    import torch

    from ..sequence.gau import (
        SequenceModel,
        first_step_change,
        residual_ratios,
        reversal_arm,
        reversal_batch,
        steps_to_threshold,
    )

    keys = ("kind", "layers", "length", "lr", "steps", "warmup", "deepnorm", "seed")
    row: dict[str, Any] = {}
    if job.get("probe_batch"):
        model = SequenceModel(length=job["length"], layers=job["layers"], kind=job["kind"],
                              deepnorm=job["deepnorm"], seed=job["seed"])
        tokens = reversal_batch(job["probe_batch"], torch.Generator().manual_seed(job["probe_seed"]),
                                length=job["length"])
        row["r_bar"] = round(residual_ratios(model, tokens).mean().item(), 6)
        row["first_step"] = round(first_step_change(model, tokens, job["lr"]), 6)
    r = reversal_arm(**{k: job[k] for k in keys}, progress=False)
    losses = np.asarray(r["losses"], dtype=np.float64)
    b = job["block"]
    row.update({
        "final_loss": round(float(r["final_loss"]), 6),
        "accuracy": round(float(r["accuracy"]), 6),
        "steps_to": {str(t): steps_to_threshold(losses, t, job["window"]) for t in job["thresholds"]},
        "curve": [round(float(v), 5) for v in losses[: len(losses) // b * b].reshape(-1, b).mean(1)],
    })
    return row


def run_jobs(jobs: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`run_job` on every job, the costliest first, over ``cfg["workers"]`` processes; results
    in the order of ``jobs``."""
    from .runner import map_seeds

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))
    done = map_seeds(run_job, [jobs[i] for i in order], workers=cfg["workers"], threads=cfg["threads"])
    out: list[dict[str, Any]] = [{}] * len(jobs)
    for i, row in zip(order, done, strict=True):
        out[i] = row
    return out


def _job(cfg: dict[str, Any], kind: str, layers: int, lr: float, warmup: int, deepnorm: bool, seed: int,
         **extra: Any) -> dict[str, Any]:
    return dict(kind=kind, layers=layers, length=cfg["length"], lr=lr, steps=cfg["steps"], warmup=warmup,
                deepnorm=deepnorm, seed=seed, thresholds=cfg["thresholds"], window=cfg["window"],
                block=cfg["block"], **extra)


def _arm_jobs(cfg: dict[str, Any], labels: list[str], lr: float) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for label in labels:
        kind, layers, warm, dn = _ARM[label]
        for seed in cfg["seeds"]:
            out.append((label, seed, _job(cfg, kind, layers, lr, cfg["warmup"] if warm else 0, dn, seed)))
    return out


def _nest(keyed: list[tuple[str, int, dict[str, Any]]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (label, seed, _), row in zip(keyed, rows, strict=True):
        out.setdefault(label, {})[str(seed)] = row
    return out


def seed_summary(by_seed: dict[str, dict[str, Any]], threshold: float | str) -> dict[str, Any]:
    """Mean, standard deviation (``ddof=1``) and standard error over seeds of one arm's final loss,
    accuracy and steps to ``threshold``. ``by_seed`` maps a seed to a run's row (see the module
    docstring). Steps are summarised over every seed only if every seed reached the threshold;
    ``reached`` counts the seeds that did."""
    import numpy as np

    if not by_seed:
        raise ValueError("by_seed is empty")
    key = str(threshold) if not isinstance(threshold, str) else threshold
    rows = list(by_seed.values())
    out: dict[str, Any] = {"n": len(rows)}

    def stats(vals: list[float]) -> tuple[float, float, float]:
        a = np.asarray(vals, dtype=np.float64)
        sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        return float(a.mean()), sd, sd / math.sqrt(len(a))

    for name in ("final_loss", "accuracy"):
        out[name], out[name + "_sd"], out[name + "_se"] = stats([r[name] for r in rows])
    steps = [r["steps_to"][key] for r in rows]
    out["reached"] = sum(s is not None for s in steps)
    if out["reached"] == len(rows):
        out["steps"], out["steps_sd"], out["steps_se"] = stats(steps)
    else:
        out["steps"] = out["steps_sd"] = out["steps_se"] = None
    return out


@experiment("ch7", "comparison", config=COMPARISON,
            description="reversal task at lr 2e-3, 600 steps: std-12, gau-24, std-12 + 50-step warmup, "
                        "std-12 + DeepNorm x 3 seeds")
def comparison(cfg: dict) -> dict:
    keyed = _arm_jobs(cfg, [a[0] for a in ARMS], cfg["lr"])
    return {"arms": _nest(keyed, run_jobs([j for _, _, j in keyed], cfg))}


@experiment("ch7", "lr_sweep", config=LR_SWEEP,
            description="reversal task, 600 steps: std-12 with and without a 50-step warmup and gau-24 at "
                        "lr 5e-4, 1e-3, 4e-3 x 3 seeds")
def lr_sweep(cfg: dict) -> dict:
    keyed = []
    for lr in cfg["lrs"]:
        keyed += [(f"{lr:g}|{label}", seed, job) for label, seed, job in _arm_jobs(cfg, cfg["arms"], lr)]
    flat = _nest(keyed, run_jobs([j for _, _, j in keyed], cfg))
    out: dict[str, dict[str, Any]] = {}
    for key, by_seed in flat.items():
        lr, label = key.split("|")
        out.setdefault(lr, {})[label] = by_seed
    return {"by_lr": out}


@experiment("ch7", "depth_sweep", config=DEPTH_SWEEP,
            description="reversal task at lr 2e-3, no warmup, 400 steps: std-2..12 and gau-24..96 x 3 seeds, "
                        "with the initial branch ratio and the first Adam step's change")
def depth_sweep(cfg: dict) -> dict:
    keyed = []
    for kind, depths in (("std", cfg["std_layers"]), ("gau", cfg["gau_layers"])):
        for layers in depths:
            for seed in cfg["seeds"]:
                keyed.append((f"{kind}-{layers}", seed,
                              _job(cfg, kind, layers, cfg["lr"], 0, False, seed,
                                   probe_batch=cfg["probe_batch"], probe_seed=cfg["probe_seed"])))
    return {"stacks": _nest(keyed, run_jobs([j for _, _, j in keyed], cfg))}
