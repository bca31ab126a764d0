"""Full runs of chapter 7 (gated attention units): the reversal experiment over seeds and configurations.

Every arm is :func:`companion.gau.reversal_arm` (model seed ``s``, data seed ``s + 1``), the
function the chapter's notebook calls for its own seed-0 run of the small configuration.

* ``small_seeds`` — the notebook's small configuration (length 16, learning rate 2e-3, 150
  steps) over model seeds 0, 1, 2: the four arms std-12, gau-24, std-12 with a 50-step linear
  warmup, std-12 with DeepNorm.
* ``full`` — the full configuration (length 32, learning rate 1e-3, 300 steps; warmup 100
  steps) with the same four arms over model seeds 0 and 1.
"""

from __future__ import annotations

from typing import Any

from . import experiment

# (label, kind, layers, warmup?, deepnorm): the warmup length comes from the configuration
ARMS: list[tuple[str, str, int, bool, bool]] = [
    ("std-12", "std", 12, False, False),
    ("gau-24", "gau", 24, False, False),
    ("std-12 + warmup", "std", 12, True, False),
    ("std-12 + DeepNorm", "std", 12, False, True),
]

SMALL = dict(length=16, lr=2e-3, steps=150, warmup=50, seeds=[0, 1, 2], threads=2)
FULL = dict(length=32, lr=1e-3, steps=300, warmup=100, seeds=[0, 1], threads=2)


def run_arms(cfg: dict[str, Any], seeds: list[int] | None = None, *, keep_losses: bool = False,
             progress: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """Train every arm of ``ARMS`` for each seed of ``seeds`` (default ``cfg["seeds"]``).

    Returns ``{label: {str(seed): {"final_loss", "accuracy", "seconds"[, "losses"]}}}``.
    """
    from ..gau import reversal_arm

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label, kind, layers, warm, deepnorm in ARMS:
        out[label] = {}
        for seed in cfg["seeds"] if seeds is None else seeds:
            r = reversal_arm(kind, layers, length=cfg["length"], lr=cfg["lr"], steps=cfg["steps"],
                             warmup=cfg["warmup"] if warm else 0, deepnorm=deepnorm, seed=seed,
                             progress=progress)
            row = {"final_loss": r["final_loss"], "accuracy": r["accuracy"], "seconds": round(r["seconds"], 1)}
            if keep_losses:
                row["losses"] = [round(v, 5) for v in r["losses"]]
            out[label][str(seed)] = row
    return out


@experiment("ch7", "small_seeds", config=SMALL,
            description="reversal task, small configuration: 4 arms (std-12, gau-24, 50-step warmup, DeepNorm) x 3 seeds")
def small_seeds(cfg: dict) -> dict:
    return {"arms": run_arms(cfg)}


@experiment("ch7", "full", config=FULL,
            description="reversal task, full configuration (length 32, lr 1e-3, 300 steps): 4 arms x 2 seeds")
def full(cfg: dict) -> dict:
    return {"arms": run_arms(cfg, keep_losses=True)}
