"""Data: toy 2-D laws and scikit-learn's 8×8 digits, scaled to [-1, 1]. Nothing is downloaded."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .utils import check_int, check_positive, make_generator, seed_generator

__all__ = ["moons", "rings", "checkerboard", "spiral", "digits", "TOY_2D"]


def _n(n) -> int:
    return check_int("n", n, minimum=1)


def moons(n: int, generator: torch.Generator | int, noise: float = 0.05) -> torch.Tensor:
    """Two interleaved half circles, centred and scaled to about [-1.5, 1.5]; ``(n, 2)`` float64."""
    n, noise = _n(n), check_positive("noise", noise, allow_zero=True)
    g = make_generator(generator)
    upper = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    th = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    x = torch.where(upper, torch.cos(th), 1 - torch.cos(th))
    y = torch.where(upper, torch.sin(th), 0.5 - torch.sin(th))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.2
    return pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)


def rings(n: int, generator: torch.Generator | int, radii=(0.6, 1.4), noise: float = 0.05) -> torch.Tensor:
    """Concentric circles with equal mass per ring; ``(n, 2)`` float64."""
    n, noise = _n(n), check_positive("noise", noise, allow_zero=True)
    r = torch.as_tensor(radii, dtype=torch.float64)
    if r.ndim != 1 or r.numel() < 1 or not torch.isfinite(r).all() or (r <= 0).any():
        raise ValueError(f"radii must be a non-empty sequence of positive radii, got {radii}")
    g = make_generator(generator)
    k = torch.randint(0, len(r), (n,), generator=g)
    th = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    pts = torch.stack([torch.cos(th), torch.sin(th)], 1) * r[k, None]
    return pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)


def checkerboard(n: int, generator: torch.Generator | int, cells: int = 4) -> torch.Tensor:
    """Uniform law on the black squares of a ``cells × cells`` board on [-2, 2]²; ``(n, 2)``."""
    n, cells = _n(n), check_int("cells", cells, minimum=2)
    g = make_generator(generator)
    out = torch.empty(0, 2, dtype=torch.float64)
    while out.shape[0] < n:  # rejection sampling, acceptance 1/2
        u = torch.rand(2 * n, 2, generator=g, dtype=torch.float64) * 4 - 2
        ij = torch.floor((u + 2) / 4 * cells).long()
        out = torch.cat([out, u[(ij.sum(1) % 2) == 0]])
    return out[:n]


def spiral(n: int, generator: torch.Generator | int, noise: float = 0.05) -> torch.Tensor:
    """A two-turn spiral in [-1.5, 1.5]²; ``(n, 2)`` float64."""
    n, noise = _n(n), check_positive("noise", noise, allow_zero=True)
    g = make_generator(generator)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    th = 4 * math.pi * s
    pts = torch.stack([torch.cos(th), torch.sin(th)], 1) * (0.2 + 1.3 * s[:, None])
    return pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)


#: Name -> sampler ``(n, generator) -> (n, 2)`` of every 2-D toy law.
TOY_2D = {"moons": moons, "rings": rings, "checkerboard": checkerboard, "spiral": spiral}


@lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


def digits(split: str = "train", seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's 8×8 digits (1797 images, shipped with the package) scaled to [-1, 1].

    Returns ``(images, labels)`` with images ``(n, 1, 8, 8)`` float32 and labels ``(n,)``.
    ``split`` is ``'train'``, ``'test'`` or ``'all'``; the split is a fixed permutation drawn
    from ``seed`` (so train and test never overlap).
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = _digits_all()
    if split == "all":
        return x.clone(), y.clone()
    perm = torch.randperm(x.shape[0], generator=seed_generator(seed))
    n_test = int(round(test_fraction * x.shape[0]))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return x[idx].clone(), y[idx].clone()
