r"""Distances between a sample and a law (or another sample), each with a known answer in the tests.

* :func:`w1_to_cdf` — Wasserstein-1 in 1-D against an exact CDF, :math:`\int|F_n-F|\,dx`;
  its Monte-Carlo floor for an exact sample is of order :math:`n^{-1/2}`.
* :func:`w1_1d` — exact W1 between two 1-D samples (merge of the empirical CDFs).
* :func:`sliced_wasserstein` — mean W1 over random 1-D projections.
* :func:`mmd_rbf` — unbiased squared MMD with a Gaussian kernel.
* :func:`total_variation`, :func:`empirical_pmf` — for discrete laws.
* :func:`frechet_distance` / :func:`gaussian_frechet` — Fréchet distance between Gaussian fits;
  :func:`digit_frechet_distance` computes it on the features of a small digit classifier.
* :func:`inception_score` / :func:`digit_inception_score` — exp of the mean KL divergence from each
  sample's class probabilities to their average (the same classifier for digits).
* :func:`loglog_slope` — least-squares slope of :math:`\log y` on :math:`\log x` (orders of convergence).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from .utils import check_int, check_tensor, make_generator, seed_generator

__all__ = [
    "w1_to_cdf",
    "w1_1d",
    "sliced_wasserstein",
    "mmd_rbf",
    "total_variation",
    "empirical_pmf",
    "gaussian_frechet",
    "frechet_distance",
    "digit_classifier",
    "digit_frechet_distance",
    "inception_score",
    "digit_inception_score",
    "loglog_slope",
    "memorisation_ratio",
    "digit_class_balance",
]


def _flat1d(name: str, x) -> torch.Tensor:
    x = check_tensor(name, x, ndim=(1, 2))
    if x.ndim == 2:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must be 1-D samples of shape (n,) or (n, 1), got {tuple(x.shape)}")
        x = x[:, 0]
    if x.numel() < 1:
        raise ValueError(f"{name} must not be empty")
    return x.to(torch.float64)


def w1_to_cdf(
    samples: torch.Tensor,
    cdf: Callable[[torch.Tensor], torch.Tensor],
    *,
    lo: float | None = None,
    hi: float | None = None,
    grid_size: int = 1 << 16,
) -> float:
    r"""Wasserstein-1 distance :math:`\int|F_n(x)-F(x)|\,dx` between a 1-D sample and a law.

    Args:
        samples: ``(n,)`` or ``(n, 1)``.
        cdf: the law's CDF, a torch function (e.g. ``GaussianMixture.cdf``).
        lo, hi: integration range. By default it covers both the sample (its range widened by
            6 sample standard deviations) and the law (widened until :math:`F<10^{-10}` below
            and :math:`F>1-10^{-10}` above), so a collapsed or displaced sample is charged
            for all the mass it misses.
        grid_size: trapezoid-rule points.
    """
    x = torch.sort(_flat1d("samples", samples)).values
    if not callable(cdf):
        raise TypeError(f"cdf must be a callable tensor -> tensor, got {type(cdf).__name__}")
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not torch.isfinite(torch.tensor(float(v)))):
            raise ValueError(f"{name} must be a finite number or None, got {v!r}")
    sd = x.std().item() if x.numel() > 1 else 1.0
    if lo is None or hi is None:
        law_lo, law_hi = _law_range(cdf, x[x.numel() // 2].item(), max(sd, 1.0))
    lo = min(x[0].item() - 6 * sd, law_lo) if lo is None else float(lo)
    hi = max(x[-1].item() + 6 * sd, law_hi) if hi is None else float(hi)
    if not hi > lo:
        raise ValueError(f"hi must be > lo, got lo={lo}, hi={hi}")
    grid = torch.linspace(lo, hi, check_int("grid_size", grid_size, minimum=16), dtype=torch.float64)
    # merge the sample points into the grid so that F_n is constant on every sub-interval;
    # the trapezoid rule on |F_n - F| is then exact up to O(h^2) at the crossings of F and F_n
    pts = torch.sort(torch.cat([grid, x.clamp(lo, hi)])).values
    F = torch.as_tensor(cdf(pts)).reshape(-1).to(torch.float64)
    if F.shape != pts.shape:
        raise ValueError(f"cdf must map an (m,) tensor to (m,) values, got {tuple(F.shape)}")
    if not torch.isfinite(F).all() or (F < -1e-9).any() or (F > 1 + 1e-9).any() or (torch.diff(F) < -1e-9).any():
        raise ValueError("cdf must return finite, non-decreasing values in [0, 1]")
    mid = 0.5 * (pts[1:] + pts[:-1])
    Fn = torch.searchsorted(x, mid, right=True).to(torch.float64) / x.numel()
    width = torch.diff(pts)
    return (0.5 * ((Fn - F[:-1]).abs() + (Fn - F[1:]).abs()) * width).sum().item()


def _law_range(cdf, center: float, width: float, tol: float = 1e-10) -> tuple[float, float]:
    """An interval outside which the law has mass below ``tol`` on each side (by doubling)."""
    lo, hi = center - width, center + width
    for _ in range(60):
        F = torch.as_tensor(cdf(torch.tensor([lo, hi], dtype=torch.float64))).reshape(-1).to(torch.float64)
        if F.numel() != 2 or not torch.isfinite(F).all():
            raise ValueError("cdf must map a (2,) tensor to 2 finite values")
        if F[0].item() <= tol and F[1].item() >= 1 - tol:
            break
        if F[0].item() > tol:
            lo = center - 2 * (center - lo)
        if F[1].item() < 1 - tol:
            hi = center + 2 * (hi - center)
    return lo, hi


def w1_1d(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Exact Wasserstein-1 distance between two 1-D samples (sizes may differ):
    :math:`\int|F_x-F_y|` summed over the merged sorted support."""
    x, y = _flat1d("x", x), _flat1d("y", y)
    if x.numel() == y.numel():
        return (torch.sort(x).values - torch.sort(y).values).abs().mean().item()
    allv = torch.sort(torch.cat([x, y])).values
    xs, ys = torch.sort(x).values, torch.sort(y).values
    Fx = torch.searchsorted(xs, allv[:-1], right=True).to(torch.float64) / x.numel()
    Fy = torch.searchsorted(ys, allv[:-1], right=True).to(torch.float64) / y.numel()
    return ((Fx - Fy).abs() * torch.diff(allv)).sum().item()


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_projections: int = 128, generator=None
) -> float:
    r"""Sliced W1: the mean over ``n_projections`` random unit directions :math:`u` of
    :math:`W_1(u^\top x, u^\top y)`. ``x``: ``(n, d)``, ``y``: ``(m, d)``."""
    x = check_tensor("x", x, ndim=2).to(torch.float64)
    y = check_tensor("y", y, ndim=2).to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if min(x.shape[0], y.shape[0], x.shape[1]) < 1:
        raise ValueError(f"x and y must hold at least one point of dimension >= 1, got {tuple(x.shape)}, {tuple(y.shape)}")
    n_projections = check_int("n_projections", n_projections, minimum=1)
    u = torch.randn(n_projections, x.shape[1], generator=make_generator(generator), dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    px, py = x @ u.T, y @ u.T
    return sum(w1_1d(px[:, j], py[:, j]) for j in range(n_projections)) / n_projections


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None, chunk: int = 4096) -> float:
    r"""Unbiased squared maximum mean discrepancy with kernel :math:`e^{-\|u-v\|^2/(2h^2)}`.

    ``x``: ``(n, d)``, ``y``: ``(m, d)``; ``bandwidth`` :math:`h` defaults to the median
    pairwise distance of the pooled sample (on at most 1000 points). Unbiased, so it can
    be slightly negative when the laws are equal.
    """
    x = check_tensor("x", x, ndim=2).to(torch.float64)
    y = check_tensor("y", y, ndim=2).to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least 2 points each")
    chunk = check_int("chunk", chunk, minimum=1)
    if bandwidth is not None and (isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float))):
        raise TypeError(f"bandwidth must be a positive number or None, got {type(bandwidth).__name__}")
    if bandwidth is None:
        z = torch.cat([x[:500], y[:500]])
        bandwidth = torch.pdist(z).median().item()
    if not (bandwidth > 0 and bandwidth < float("inf")):
        raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth} (identical points give a zero median distance)")
    gamma = 1.0 / (2 * bandwidth**2)

    def ksum(a: torch.Tensor, b: torch.Tensor) -> float:
        s = 0.0
        for i in range(0, a.shape[0], chunk):
            s += torch.exp(-gamma * torch.cdist(a[i : i + chunk], b) ** 2).sum().item()
        return s

    n, m = x.shape[0], y.shape[0]
    kxx = (ksum(x, x) - n) / (n * (n - 1))
    kyy = (ksum(y, y) - m) / (m * (m - 1))
    kxy = ksum(x, y) / (n * m)
    return kxx + kyy - 2 * kxy


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    r"""Total variation :math:`\tfrac12\sum_i|p_i-q_i|` between two pmfs of the same shape."""
    p = check_tensor("p", p).to(torch.float64)
    q = check_tensor("q", q).to(torch.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    for name, v in (("p", p), ("q", q)):
        if (v < 0).any() or abs(v.sum().item() - 1) > 1e-6:
            raise ValueError(f"{name} must be a pmf (non-negative, summing to 1)")
    return 0.5 * (p - q).abs().sum().item()


def empirical_pmf(labels: torch.Tensor, n_states: int) -> torch.Tensor:
    """Frequencies of integer ``labels`` ``(n,)`` in ``0..n_states-1``, as a float64 pmf."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
        raise TypeError("labels must be an integer tensor")
    n_states = check_int("n_states", n_states, minimum=1)
    if labels.numel() == 0 or labels.min() < 0 or labels.max() >= n_states:
        raise ValueError(f"labels must be non-empty and lie in [0, {n_states})")
    return torch.bincount(labels.reshape(-1), minlength=n_states).to(torch.float64) / labels.numel()


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_frechet(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    r"""Fréchet (2-Wasserstein squared) distance between :math:`\mathcal N(\mu_1,C_1)` and
    :math:`\mathcal N(\mu_2,C_2)`: :math:`\|\mu_1-\mu_2\|^2+\mathrm{tr}(C_1+C_2-2(C_1^{1/2}C_2C_1^{1/2})^{1/2})`."""
    mu1, mu2 = (check_tensor(n, v, ndim=1).to(torch.float64) for n, v in (("mu1", mu1), ("mu2", mu2)))
    cov1, cov2 = (check_tensor(n, v, ndim=2).to(torch.float64) for n, v in (("cov1", cov1), ("cov2", cov2)))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError("mu1, mu2 must be (d,) and cov1, cov2 must be (d, d) with the same d")
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        scale = c.abs().max().item() or 1.0
        if (c - c.T).abs().max().item() > 1e-8 * scale:
            raise ValueError(f"{name} must be symmetric")
        if torch.linalg.eigvalsh(c).min().item() < -1e-8 * scale:
            raise ValueError(f"{name} must be positive semi-definite (it has a negative eigenvalue)")
    s1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(s1 @ cov2 @ s1)
    return ((mu1 - mu2) ** 2).sum().item() + torch.trace(cov1 + cov2 - 2 * cross).item()


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature samples ``(n, d)`` and ``(m, d)``."""
    x = check_tensor("x", x, ndim=2).to(torch.float64)
    y = check_tensor("y", y, ndim=2).to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("x and y need at least 2 rows each")
    return gaussian_frechet(x.mean(0), torch.cov(x.T).reshape(x.shape[1], -1),
                            y.mean(0), torch.cov(y.T).reshape(y.shape[1], -1))


def digit_classifier(seed: int = 0, steps: int = 600):
    """Train (once per process and seed; cached) the small classifier of
    :class:`companion.core.nets.DigitClassifier` on the digits' training split.
    Returns ``(model, test_accuracy)``; about 3 s on 2 idle cores. Safe to call under
    ``torch.no_grad()``."""
    return _digit_classifier(check_int("seed", seed), check_int("steps", steps, minimum=1))


@lru_cache(maxsize=2)
def _digit_classifier(seed: int, steps: int):
    from .data import digits
    from .nets import DigitClassifier

    xtr, ytr = digits("train")
    xte, yte = digits("test")
    g = seed_generator(seed)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, xtr.shape[0], (128,), generator=g)
            xb = xtr[idx] + 0.05 * torch.randn(xtr[idx].shape, generator=g)  # light noise for robustness
            loss = torch.nn.functional.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).double().mean().item()
    return model, acc


def digit_frechet_distance(samples: torch.Tensor, reference: torch.Tensor | None = None, seed: int = 0) -> float:
    """Fréchet distance between digit ``samples`` ``(n, 1, 8, 8)`` and ``reference`` (default:
    the test split) in the feature space of :func:`digit_classifier` (an 8×8 "FID")."""
    from .data import digits

    samples = check_tensor("samples", samples, ndim=4)
    if reference is None:
        reference = digits("test")[0]
    model, _ = digit_classifier(seed)
    with torch.no_grad():
        fx = model.features(samples.to(torch.float32).clamp(-1, 1))
        fy = model.features(reference.to(torch.float32))
    return frechet_distance(fx, fy)


def inception_score(probs: torch.Tensor) -> float:
    r"""Inception-style score of a sample from its class probabilities (equation :eq:`eae-is`):

    .. math:: \mathrm{IS}=\exp\Big(\frac1n\sum_{i=1}^n\mathrm{KL}\big(p(y\mid x_i)\,\|\,\hat p(y)\big)\Big),
       \qquad \hat p(y)=\frac1n\sum_{i=1}^n p(y\mid x_i),

    equivalently :math:`\exp\big(H(\hat p)-\frac1n\sum_i H(p(\cdot\mid x_i))\big)`. It lies in
    :math:`[1, k]`: ``1`` when every row is the same, ``k`` when every row is one-hot and the ``k``
    classes are used equally often.

    ``probs``: ``(n, k)``, each row a pmf (non-negative, summing to 1 within ``1e-6``), ``n >= 1``,
    ``k >= 2``. Computed in float64 with :math:`0\log0=0`. Returns a float.
    """
    p = check_tensor("probs", probs, ndim=2)   # float32/float64, finite
    n, k = p.shape
    if n < 1 or k < 2:
        raise ValueError(f"probs must have shape (n, k) with n >= 1 and k >= 2 classes, got {tuple(p.shape)}")
    p = p.to(torch.float64)
    if (p < 0).any() or ((p.sum(1) - 1).abs() > 1e-6).any():
        raise ValueError("every row of probs must be a pmf (non-negative entries summing to 1)")
    marginal = p.mean(0)
    # KL(p_i || marginal) = sum_y p_iy (log p_iy - log marginal_y); marginal_y > 0 wherever p_iy > 0
    kl = (torch.special.xlogy(p, p) - torch.special.xlogy(p, marginal)).sum(1)
    return torch.exp(kl.mean()).item()


def digit_inception_score(samples: torch.Tensor, seed: int = 0) -> float:
    """:func:`inception_score` of digit ``samples`` ``(n, 1, 8, 8)`` (pixels in [-1, 1], clamped)
    under the softmax of :func:`digit_classifier` (ten classes, so the score lies in [1, 10])."""
    samples = check_tensor("samples", samples, ndim=4)
    model, _ = digit_classifier(seed)
    with torch.no_grad():
        probs = torch.softmax(model(samples.to(torch.float32).clamp(-1, 1)).double(), dim=1)
    return inception_score(probs)


def loglog_slope(x, y) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x` (the observed order)."""
    try:
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"x and y must be sequences of numbers: {err}") from None
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError("x and y must have the same length >= 2")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("x and y must be positive for a log-log fit")
    lx, ly = torch.log(x), torch.log(y)
    lx0 = lx - lx.mean()
    if (lx0 * lx0).sum().item() == 0:
        raise ValueError("x must take at least two distinct values for a slope")
    return ((lx0 * (ly - ly.mean())).sum() / (lx0 * lx0).sum()).item()


def memorisation_ratio(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    r"""Are samples closer to the training set than fresh data is? (chapter 1, memorisation check)

    For each sample, the Euclidean distance to its nearest training example; the same for each
    held-out example. Returns ``{'median_samples', 'median_test', 'ratio', 'frac_closer'}`` with
    ``ratio = median_samples / median_test``: a model that copies its training set has
    ``ratio`` near 0, one that generates as new data does has ``ratio`` near 1 or above.
    ``frac_closer`` is the fraction of samples nearer to the training set than the closest
    held-out example is. Inputs ``(n, ...)`` with equal trailing shapes.
    """
    samples = check_tensor("samples", samples)
    train = check_tensor("train", train)
    test = check_tensor("test", test)
    for name, v in (("samples", samples), ("train", train), ("test", test)):
        if v.ndim < 2 or v.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch (n, ...), got shape {tuple(v.shape)}")
    if not samples.shape[1:] == train.shape[1:] == test.shape[1:]:
        raise ValueError(f"samples, train and test must share their trailing shape, got "
                         f"{tuple(samples.shape[1:])}, {tuple(train.shape[1:])}, {tuple(test.shape[1:])}")
    tr = train.reshape(train.shape[0], -1).to(torch.float64)
    d_s = torch.cdist(samples.reshape(samples.shape[0], -1).to(torch.float64), tr).min(1).values
    d_t = torch.cdist(test.reshape(test.shape[0], -1).to(torch.float64), tr).min(1).values
    if d_t.median().item() == 0:
        raise ValueError("half the test examples are copies of training examples: the ratio is undefined")
    return {"median_samples": d_s.median().item(), "median_test": d_t.median().item(),
            "ratio": (d_s.median() / d_t.median()).item(), "frac_closer": (d_s < d_t.min()).double().mean().item()}


def digit_class_balance(samples: torch.Tensor, seed: int = 0) -> dict:
    r"""Label histogram of digit ``samples`` ``(n, 1, 8, 8)`` under :func:`digit_classifier` and
    Pearson's :math:`\chi^2` test against the uniform law on the 10 classes (chapter 1, class
    balance check). Returns ``{'counts': list of 10 ints, 'chi2', 'p_value'}``; a small p-value
    says the generator favours some digits. Needs ``n >= 50`` (5 expected per class)."""
    from scipy.stats import chisquare

    samples = check_tensor("samples", samples, ndim=4)
    if samples.shape[1:] != (1, 8, 8):
        raise ValueError(f"samples must have shape (n, 1, 8, 8), got {tuple(samples.shape)}")
    if samples.shape[0] < 50:
        raise ValueError(f"need at least 50 samples for the chi-square test (5 per class), got {samples.shape[0]}")
    model, _ = digit_classifier(seed)
    with torch.no_grad():
        labels = model(samples.to(torch.float32).clamp(-1, 1)).argmax(1)
    counts = torch.bincount(labels, minlength=10)
    res = chisquare(counts.numpy())
    return {"counts": counts.tolist(), "chi2": float(res.statistic), "p_value": float(res.pvalue)}
