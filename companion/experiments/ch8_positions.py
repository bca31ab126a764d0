"""Full runs of chapter 8 (length extrapolation): seed sweeps and arms too long for the notebook.

Every experiment trains one :class:`companion.sequence.positions.PositionTransformer` per (task, training
positions, seed) with :func:`companion.sequence.positions.extrapolation_table` (the recipe the notebook
runs) and records its per-answer accuracy at each test length.

The *grid* experiments cross the four model variants (sinusoidal encoding, sinusoidal with
log-n-scaled attention, RoPE, a learned table) with the four training position samplers
(plain, random, equal-mean exponential, equal-mean Beta) on the notebook's small configuration,
three seeds each, and also test every random-position model on random test positions. A learned
table cannot read the unbounded equal-mean exponential positions (no row beyond ``max_len - 1``),
so that one cell is left out; the Beta sampler is its bounded replacement.
"""

from __future__ import annotations

from typing import Any

from ..sequence import positions as P
from .runner import experiment

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


@experiment("ch8", "seeds_small", config=SMALL,
            description="bucket sort, small model (2 layers, width 32, 400 steps): 3 position schemes x 3 seeds")
def seeds_small(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)


@experiment("ch8", "full_sort", config=dict(FULL, tasks=["sort"]),
            description="bucket sort, larger model (3 layers, width 64, 1500 steps): 3 position schemes x 3 seeds")
def full_sort(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)


@experiment("ch8", "full_evenpairs", config=dict(FULL, tasks=["evenpairs"]),
            description="even pairs, larger model (3 layers, width 64, 1500 steps): 3 position schemes x 3 seeds")
def full_evenpairs(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_table(cfg)


# ---------------------------------------------------------------------------------------- grids
# variant name -> (encoding, log-n scaled attention)
VARIANTS = {"sin": ("sin", False), "sin_logn": ("sin", True), "rope": ("rope", False), "learned": ("learned", False)}
GRID_KINDS = ["plain", "random", "equal_mean", "beta"]
SKIP = {("learned", "equal_mean")}  # a table has no rows for positions beyond max_len - 1
GRID = dict(kinds=GRID_KINDS, seeds=[0, 1, 2], lengths=LENGTHS, n_test=256,
            dim=32, heads=4, layers=2, steps=400, lr=3e-3, batch_size=64, max_len=256, threads=1)


def run_grid(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and test every (variant, task, training positions, seed) of ``cfg`` (random-position
    models also on random test positions); one row per model, with its ``"variant"``."""
    train_kw = {k: cfg[k] for k in TRAIN_KEYS}
    rows = []
    for name in cfg["variants"]:
        pe, log_n = VARIANTS[name]
        kinds = [k for k in cfg["kinds"] if (name, k) not in SKIP]
        for row in P.extrapolation_table(cfg["tasks"], kinds, cfg["seeds"], cfg["lengths"], n=cfg["n_test"],
                                         progress=False, random_test=True, pe=pe, log_n=log_n, **train_kw):
            row["seconds"] = round(row["seconds"], 1)
            rows.append({"variant": name, **row})
    return {"rows": rows}


def _grid(task: str, variants: list[str]) -> dict[str, Any]:
    return dict(GRID, tasks=[task], variants=variants)


@experiment("ch8", "grid_sort_sin", config=_grid("sort", ["sin", "sin_logn"]),
            description="bucket sort, small model: sinusoidal and log-n-scaled sinusoidal x 4 samplers x 3 seeds")
def grid_sort_sin(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_grid(cfg)


@experiment("ch8", "grid_sort_rope_learned", config=_grid("sort", ["rope", "learned"]),
            description="bucket sort, small model: RoPE and learned positions x 4 samplers x 3 seeds")
def grid_sort_rope_learned(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_grid(cfg)


@experiment("ch8", "grid_first_sin", config=_grid("first", ["sin", "sin_logn"]),
            description="first marker, small model: sinusoidal and log-n-scaled sinusoidal x 4 samplers x 3 seeds")
def grid_first_sin(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_grid(cfg)


@experiment("ch8", "grid_first_rope_learned", config=_grid("first", ["rope", "learned"]),
            description="first marker, small model: RoPE and learned positions x 4 samplers x 3 seeds")
def grid_first_rope_learned(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_grid(cfg)


# the spare parameter of the Beta sampler: alpha < 1 puts more mass on long stretches (alpha = 1 is in the grids)
ALPHA = dict(GRID, kinds=["beta"], tasks=["sort", "first"], alphas=[0.25, 0.5])


@experiment("ch8", "beta_alpha", config=ALPHA,
            description="sort and first marker, small sinusoidal model: Beta sampler with alpha = 0.25, 0.5 x 3 seeds")
def beta_alpha(cfg: dict[str, Any]) -> dict[str, Any]:
    train_kw = {k: cfg[k] for k in TRAIN_KEYS}
    rows = []
    for alpha in cfg["alphas"]:
        for row in P.extrapolation_table(cfg["tasks"], cfg["kinds"], cfg["seeds"], cfg["lengths"], n=cfg["n_test"],
                                         progress=False, beta_alpha=alpha, **train_kw):
            row["seconds"] = round(row["seconds"], 1)
            rows.append({"alpha": alpha, **row})
    return {"rows": rows}
