"""Full runs of chapter 7 (length extrapolation): seed sweeps and arms too long for the notebook.

Every experiment trains one :class:`companion.positions.PositionTransformer` per (task, training
positions, seed) with :func:`companion.positions.extrapolation_table` (the recipe the notebook
runs for seed 0) and records its per-answer accuracy at each test length.
"""

from __future__ import annotations

from typing import Any

from .. import positions as P
from . import experiment

KINDS = ["plain", "random", "equal_mean"]
LENGTHS = [16, 32, 64]
TRAIN_KEYS = ("dim", "heads", "layers", "steps", "lr", "batch_size", "max_len")

# the notebook's small run (section 4), over three seeds
SMALL = dict(tasks=["sort"], kinds=KINDS, seeds=[0, 1, 2], lengths=LENGTHS, n_test=256,
             dim=32, heads=4, layers=2, steps=400, lr=3e-3, batch_size=64, max_len=256, threads=1)
# the larger model and longer run of the closing note, one experiment per task
FULL = dict(kinds=KINDS, seeds=[0, 1, 2], lengths=LENGTHS, n_test=256,
            dim=64, heads=4, layers=3, steps=1500, lr=1e-3, batch_size=64, max_len=256, threads=1)


def run_table(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and test every (task, training positions, seed) of ``cfg``; one row per model."""
    train_kw = {k: cfg[k] for k in TRAIN_KEYS}
    rows = P.extrapolation_table(cfg["tasks"], cfg["kinds"], cfg["seeds"], cfg["lengths"],
                                 n=cfg["n_test"], progress=False, **train_kw)
    for row in rows:
        row["seconds"] = round(row["seconds"], 1)
    return {"rows": rows}


@experiment("ch7", "seeds_small", config=SMALL,
            description="bucket sort, small model (2 layers, width 32, 400 steps): 3 position schemes x 3 seeds")
def seeds_small(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)


@experiment("ch7", "full_sort", config=dict(FULL, tasks=["sort"]),
            description="bucket sort, larger model (3 layers, width 64, 1500 steps): 3 position schemes x 3 seeds")
def full_sort(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)


@experiment("ch7", "full_evenpairs", config=dict(FULL, tasks=["evenpairs"]),
            description="even pairs, larger model (3 layers, width 64, 1500 steps): 3 position schemes x 3 seeds")
def full_evenpairs(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)
