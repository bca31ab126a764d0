r"""How to make a claim about a *learned* generator that survives its own noise.

The laboratory's claims are exact; a trained network gives draws, and a metric of a draw is a
random number. A single sample seed and a single training seed make an anecdote: on the 8×8
digits, the Fréchet distance (FD) of 449 samples moves by about 10 from one sample seed to the
next. This module is the protocol every digits claim of the book goes through:

* **pool** the samples of several sample seeds (at least three, and at least as many samples as
  the training set) and compute each metric on the pool (:func:`pooled_report`);
* compare with a **floor measured at the same sample size**: the same metric for as many real
  training digits against the same held-out set (:func:`floor`), since FD is biased upwards
  at small n;
* give the **spread over sample seeds** (per-seed values) and, one level up, over training seeds;
* say "A beats B" only when a **paired bootstrap** (:func:`paired_bootstrap_fd`) puts the
  difference beyond its noise; otherwise the two are indistinguishable;
* check **memorisation** with the 5th-percentile rule (:func:`memorisation_fraction`) and
  **class balance** on the pool (:func:`companion.core.metrics.digit_class_balance`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import metrics
from .utils import check_int, check_tensor, make_generator

__all__ = [
    "digit_features",
    "fd_features",
    "floor",
    "memorisation_fraction",
    "paired_bootstrap_fd",
    "bootstrap_fd",
    "pooled_report",
    "compare",
]


def digit_features(x: torch.Tensor) -> torch.Tensor:
    """Features ``(n, d)`` of digit images ``(n, 1, 8, 8)`` (clamped to [-1, 1]) under the
    classifier of :func:`companion.core.metrics.digit_classifier`, in float64."""
    x = check_tensor("x", x, ndim=4)
    if x.shape[1:] != (1, 8, 8):
        raise ValueError(f"x must have shape (n, 1, 8, 8), got {tuple(x.shape)}")
    model, _ = metrics.digit_classifier(0)
    with torch.no_grad():
        return model.features(x.to(torch.float32).clamp(-1, 1)).to(torch.float64)


def fd_features(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Fréchet distance between two feature samples ``(n, d)``, ``(m, d)`` (Gaussian fits)."""
    return metrics.frechet_distance(fa, fb)


def _moments(f: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = f if idx is None else f[idx]
    mu = g.mean(0)
    c = g - mu
    return mu, c.T @ c / (g.shape[0] - 1)


def _fd_batch(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_r: torch.Tensor, cov_r: torch.Tensor) -> torch.Tensor:
    """FD for a batch of moment pairs ``(B, d)``, ``(B, d, d)``: the trace of the cross term is the
    sum of the square roots of the eigenvalues of :math:`C_a C_r` (real and >= 0 for PSD pairs)."""
    ev = torch.linalg.eigvals(cov_a @ cov_r).real.clamp_min(0)
    tr = torch.diagonal(cov_a, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(cov_r, dim1=-2, dim2=-1).sum(-1)
    return ((mu_a - mu_r) ** 2).sum(-1) + tr - 2 * ev.sqrt().sum(-1)


def _boot_moments(f: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means ``(B, d)`` and covariances ``(B, d, d)`` of ``f[idx[b]]`` for each bootstrap row ``b``."""
    g = f[idx]                                   # (B, n, d)
    mu = g.mean(1)
    c = g - mu[:, None]
    return mu, c.transpose(1, 2) @ c / (idx.shape[1] - 1)


def bootstrap_fd(fa: torch.Tensor, fr: torch.Tensor, *, n_boot: int = 400,
                 generator: torch.Generator | int | None = 0) -> torch.Tensor:
    """Bootstrap replicates ``(n_boot,)`` of FD(``fa``, ``fr``) with the rows of ``fa`` resampled
    with replacement and the reference ``fr`` held fixed: the sampling noise of the generated
    sample, given the held-out set every claim is measured against."""
    fa, fr = _check_features(fa, "fa"), _check_features(fr, "fr")
    n_boot = check_int("n_boot", n_boot, minimum=10)
    g = make_generator(generator)
    mr, cr = _moments(fr)
    out = []
    for chunk in _chunks(n_boot):
        ia = torch.randint(fa.shape[0], (chunk, fa.shape[0]), generator=g)
        out.append(_fd_batch(*_boot_moments(fa, ia), mr, cr))
    return torch.cat(out)


def paired_bootstrap_fd(fa: torch.Tensor, fb: torch.Tensor, fr: torch.Tensor, *, n_boot: int = 400,
                        generator: torch.Generator | int | None = 0) -> dict[str, float | str]:
    r"""Is FD(A) below FD(B)? ``fa``, ``fb``: features ``(n, d)`` of two samplers run from the
    *same* starts (row i of both from the same noise), ``fr``: the reference ``(m, d)``.

    Each replicate resamples the start indices once for both samplers (the pairing), so the luck
    of the draw of starts, which both share, cancels in the difference; the reference is held
    fixed, as in :func:`bootstrap_fd`. Returns ``{'diff': FD(A) - FD(B), 'lo', 'hi'}`` (2.5 and
    97.5 percentiles of the replicates), ``'se'`` (their standard deviation) and ``'verdict'``:
    ``'A'`` or ``'B'`` (the better one) when the 95 % interval excludes 0, else ``'='``
    (indistinguishable)."""
    fa, fb, fr = _check_features(fa, "fa"), _check_features(fb, "fb"), _check_features(fr, "fr")
    if fa.shape != fb.shape:
        raise ValueError(f"fa and fb must be paired (same shape), got {tuple(fa.shape)} and {tuple(fb.shape)}")
    n_boot = check_int("n_boot", n_boot, minimum=10)
    g = make_generator(generator)
    mr, cr = _moments(fr)
    diffs = []
    for chunk in _chunks(n_boot):
        i = torch.randint(fa.shape[0], (chunk, fa.shape[0]), generator=g)
        diffs.append(_fd_batch(*_boot_moments(fa, i), mr, cr) - _fd_batch(*_boot_moments(fb, i), mr, cr))
    d = torch.cat(diffs)
    lo, hi = torch.quantile(d, torch.tensor([0.025, 0.975], dtype=d.dtype)).tolist()
    diff = fd_features(fa, fr) - fd_features(fb, fr)
    return {"diff": diff, "lo": lo, "hi": hi, "se": float(d.std()),
            "verdict": "A" if hi < 0 else "B" if lo > 0 else "="}


def _chunks(n: int, size: int = 100):
    while n > 0:
        yield min(size, n)
        n -= size


def _check_features(f, name: str) -> torch.Tensor:
    f = check_tensor(name, f, ndim=2).to(torch.float64)
    if f.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows, got {f.shape[0]}")
    return f


def floor(n: int, *, train: torch.Tensor | None = None, test: torch.Tensor | None = None, n_boot: int = 400,
          generator: torch.Generator | int | None = 0) -> dict[str, float]:
    r"""The FD floor at sample size ``n``: FD of ``n`` real training digits (a seeded random
    subset; all of them when ``n`` is the training set's size) against the held-out digits, with
    a bootstrap standard deviation. A generator that drew new digits from the data's law would
    score this, up to that spread. ``n`` must not exceed the training set."""
    from .data import digits

    train = digits("train")[0] if train is None else train
    test = digits("test")[0] if test is None else test
    n = check_int("n", n, minimum=2, maximum=train.shape[0])
    g = make_generator(generator)
    idx = torch.randperm(train.shape[0], generator=g)[:n]
    ft, fr = digit_features(train[idx]), digit_features(test)
    boot = bootstrap_fd(ft, fr, n_boot=n_boot, generator=g)
    return {"n": n, "fd": fd_features(ft, fr), "boot_sd": float(boot.std()), "boot_mean": float(boot.mean())}


def memorisation_fraction(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, *,
                          quantile: float = 0.05, closest: int = 8) -> dict[str, Any]:
    r"""Fraction of samples nearer to a training example than the ``quantile`` of held-out
    examples are (Euclidean distance to the nearest training example).

    The threshold is the ``quantile`` (5 %) of the held-out-to-train nearest distances, so
    held-out data score ``quantile`` by construction and a generator that copies its training set
    scores near 1. Returns ``{'fraction', 'threshold', 'test_fraction', 'closest'}``, the last a
    list of ``(sample index, training index, distance)`` for the ``closest`` nearest samples
    (to show the pairs). Inputs ``(n, ...)`` with equal trailing shapes."""
    samples, train, test = (check_tensor(k, v) for k, v in (("samples", samples), ("train", train), ("test", test)))
    for name, v in (("samples", samples), ("train", train), ("test", test)):
        if v.ndim < 2 or v.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch (n, ...), got shape {tuple(v.shape)}")
    if not samples.shape[1:] == train.shape[1:] == test.shape[1:]:
        raise ValueError("samples, train and test must share their trailing shape")
    if not (isinstance(quantile, float) and 0 < quantile < 1):
        raise ValueError(f"quantile must be a float in (0, 1), got {quantile!r}")
    closest = check_int("closest", closest, minimum=0)
    tr = train.reshape(train.shape[0], -1).to(torch.float64)
    d_s, j_s = torch.cdist(samples.reshape(samples.shape[0], -1).to(torch.float64), tr).min(1)
    d_t = torch.cdist(test.reshape(test.shape[0], -1).to(torch.float64), tr).min(1).values
    thr = torch.quantile(d_t, quantile).item()
    order = torch.argsort(d_s)[:closest]
    return {"fraction": (d_s < thr).double().mean().item(), "threshold": thr,
            "test_fraction": (d_t < thr).double().mean().item(),
            "closest": [(int(i), int(j_s[i]), float(d_s[i])) for i in order]}


def pooled_report(samples_by_seed: list[torch.Tensor], *, train: torch.Tensor | None = None,
                  test: torch.Tensor | None = None, floor_fd: float | None = None) -> dict[str, Any]:
    r"""Every metric of one sampler on the pool of its sample seeds.

    ``samples_by_seed``: one ``(n_k, 1, 8, 8)`` batch per sample seed (at least 3). Returns the
    pooled FD and its ratio to ``floor_fd`` (the floor at the pooled size, :func:`floor`; computed
    here when ``None``), the per-seed FDs (their spread), the pooled class balance
    (:func:`companion.core.metrics.digit_class_balance`) and the memorisation fraction."""
    from .data import digits

    if not isinstance(samples_by_seed, (list, tuple)) or len(samples_by_seed) < 3:
        raise ValueError("samples_by_seed must be a list of at least 3 batches (one per sample seed)")
    train = digits("train")[0] if train is None else train
    test = digits("test")[0] if test is None else test
    pool = torch.cat([check_tensor(f"samples_by_seed[{k}]", x, ndim=4) for k, x in enumerate(samples_by_seed)])
    fr = digit_features(test)
    per_seed = [fd_features(digit_features(x), fr) for x in samples_by_seed]
    fd = fd_features(digit_features(pool), fr)
    if floor_fd is None:
        floor_fd = floor(min(pool.shape[0], train.shape[0]), train=train, test=test)["fd"]
    mem = memorisation_fraction(pool, train, test)
    bal = metrics.digit_class_balance(pool)
    mean = sum(per_seed) / len(per_seed)
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1))
    return {"n": pool.shape[0], "fd": fd, "floor": floor_fd, "ratio": fd / floor_fd,
            "fd_per_seed": per_seed, "fd_seed_sd": sd, "class_p": bal["p_value"], "class_counts": bal["counts"],
            "memorisation": mem["fraction"], "memorisation_threshold": mem["threshold"]}


def compare(samples_a: list[torch.Tensor], samples_b: list[torch.Tensor], *, test: torch.Tensor | None = None,
            n_boot: int = 400, generator: torch.Generator | int | None = 0) -> dict[str, float | str]:
    """:func:`paired_bootstrap_fd` of two samplers' pools (same sample seeds, same starts)."""
    from .data import digits

    if len(samples_a) != len(samples_b):
        raise ValueError("samples_a and samples_b must hold the same sample seeds")
    test = digits("test")[0] if test is None else test
    fa, fb = digit_features(torch.cat(list(samples_a))), digit_features(torch.cat(list(samples_b)))
    return paired_bootstrap_fd(fa, fb, digit_features(test), n_boot=n_boot, generator=generator)
