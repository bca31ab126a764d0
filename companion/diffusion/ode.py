r"""Chapter 3 — the diffusion ODE derived directly: Jacobian, continuity equation, heat equation.

The chapter builds a deterministic generative model without any SDE. One Euler step of
:math:`dx/dt=f_t(x)` changes the log-density by :math:`-\nabla\!\cdot f_t\,\Delta t` (the
Jacobian determinant, equation :eq:`ode-jacobian`); a Taylor expansion gives the same change a second
way; equating both gives the continuity equation (equation :eq:`ode-continuity`). The ansatz
:math:`f_t=-D_t\nabla\log p_t` turns it into the heat equation, solved by a Gaussian convolution
of width :math:`\sigma_t^2=2\int_0^tD_s\,ds`, and the generative model is

.. math:: \frac{dx}{dt}=-\dot\sigma_t\sigma_t\,\nabla\log p_t(x)
          \quad\Longleftrightarrow\quad
          \frac{dx}{d\sigma}=-\sigma\,\nabla\log p_\sigma(x)

.. math:: -\sigma\,\nabla\log p_\sigma(x)=\frac{x-\hat x_0(x,\sigma)}{\sigma}

(equations :eq:`ode-model` and :eq:`ode-sigma`), with :math:`\hat x_0=x+\sigma^2\nabla\log p_\sigma`
Tweedie's denoiser.

**Conventions.** A *score function* is any callable ``score_fn(x, sigma) -> (n, ...)`` giving
:math:`\nabla\log p_\sigma(x)` for :math:`p_\sigma=p_0*\mathcal N(0,\sigma^2I)`, with ``x`` of
shape ``(n, ...)`` and ``sigma`` a Python float. :func:`gmm_score_fn` builds the exact one of the
laboratory; :class:`~companion.diffusion.precond.ScoreNet` wraps a trained network. Here :math:`\sigma` is the heat-kernel
width, which is also the VE / EDM noise level and the book's noise-to-signal ratio
:math:`\bar\beta_t/\bar\alpha_t` (equation :eq:`ode-vp-rescale`).

**Solvers.** :func:`sample_euler`, :func:`sample_heun` and :func:`sample_rk4` are plain functions
over a decreasing grid of noise levels (k-diffusion style); each returns ``(x, info)`` with
``info['nfe']`` and ``info['denoised']`` (the last :math:`\hat x_0`), and calls
``callback({'i', 'x', 'sigma', 'sigma_next', 'denoised'})`` once per step.
:func:`solve_adaptive` is a Dormand–Prince 5(4) reference for any ODE, and
:func:`log_likelihood` the instantaneous change of variables (equation :eq:`ode-loglik`) with an exact
or a Hutchinson divergence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from ..core.gmm import GaussianMixture
from ..core.schedules import ContinuousSchedule
from ..core.utils import (
    MAX_STEPS,
    check_batch,
    check_int,
    check_kind,
    check_positive,
    check_tensor,
    make_generator,
    mark_kind,
)

# the preconditioned network and its loss live in precond; the names stay importable from here
from .precond import ScoreFn, ScoreNet, csm_loss  # noqa: F401

__all__ = [
    "gmm_score_fn",
    "heat_log_density",
    "heat_spectral_1d",
    "heat_crank_nicolson_1d",
    "heat_semidiscrete_1d",
    "csm_piecewise_fit",
    "log_density_along_path",
    "sigma_grid",
    "heat_velocity",
    "heat_drift",
    "pf_ode_drift",
    "vp_to_heat",
    "sample_euler",
    "sample_heun",
    "sample_rk4",
    "SOLVERS",
    "solve_adaptive",
    "sample_adaptive",
    "batch_jacobian",
    "divergence",
    "gaussian_log_prob",
    "log_likelihood",
]

Velocity = Callable[[torch.Tensor, float], torch.Tensor]


# ============================================================================ validation
def _check_callable(name: str, fn) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _score(score_fn: ScoreFn, x: torch.Tensor, sigma: float, kind: str = "score") -> torch.Tensor:
    """Call ``score_fn`` and check that it returns a finite tensor of ``x``'s shape."""
    check_kind(score_fn, kind, "score_fn")
    s = score_fn(x, sigma)
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"score_fn must return a torch.Tensor, got {type(s).__name__}")
    if s.shape != x.shape:
        raise ValueError(f"score_fn returned shape {tuple(s.shape)}, expected the shape of x {tuple(x.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError(f"score_fn returned NaN or infinite values at sigma={sigma:.6g}")
    return s.to(dtype=x.dtype)


def _check_sigmas(sigmas) -> list[float]:
    sigmas = check_tensor("sigmas", sigmas, ndim=1)
    if sigmas.numel() < 2:
        raise ValueError(f"sigmas must hold at least 2 noise levels, got {sigmas.numel()}")
    if not (sigmas > 0).all():
        raise ValueError(f"sigmas must all be > 0 (sigma_min > 0), got min {sigmas.min().item():.6g}")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError("sigmas must be strictly decreasing (from sigma_max down to sigma_min)")
    return [float(s) for s in sigmas]


# ======================================================================= the laboratory
def _check_sigma_range(sigma_max, sigma_min) -> tuple[float, float]:
    """Validate a noise range: both levels finite and > 0, ``sigma_max > sigma_min``."""
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_min = check_positive("sigma_min", sigma_min)
    if sigma_max <= sigma_min:
        raise ValueError(f"sigma_max must be > sigma_min, got {sigma_max} <= {sigma_min}")
    return sigma_max, sigma_min


def gmm_score_fn(gm: GaussianMixture) -> ScoreFn:
    r"""Exact score of :math:`p_\sigma=p_0*\mathcal N(0,\sigma^2I)` for a mixture ``p_0``
    (equation :eq:`ode-heat-solution`): ``score_fn(x, sigma)``, ``x``: ``(n, d)`` -> ``(n, d)``.

    Each component becomes :math:`\mathcal N(\mu_k,\Sigma_k+\sigma^2I)`; with the
    eigendecomposition :math:`\Sigma_k=U_k\Lambda_kU_k^\top` computed once, every noise level
    costs one rotation and a division (no new mixture is built). Computed in float64, returned
    in ``x``'s dtype.
    """
    if not isinstance(gm, GaussianMixture):
        raise TypeError(f"gm must be a GaussianMixture, got {type(gm).__name__}")

    def score_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = check_positive("sigma", sigma, allow_zero=True)
        return gm.score_at(x, 1.0, sigma)  # the laboratory's fast path (eigendecomposition cached)

    return mark_kind(score_fn, "score")


def heat_log_density(gm: GaussianMixture, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    r"""The heat equation's solution for a mixture ``p_0``, differentiable in ``x`` *and* ``sigma``.

    :math:`\log p_\sigma(x)=\log\sum_k\pi_k\,\mathcal N(x;\mu_k,\Sigma_k+\sigma^2I)` — the Gaussian
    convolution of equation :eq:`ode-heat-solution`. ``x``: ``(n, d)``; ``sigma``: float, 0-d tensor or
    ``(n,)`` tensor (may require grad). Returns ``(n,)`` in ``x``'s dtype.
    """
    if not isinstance(gm, GaussianMixture):
        raise TypeError(f"gm must be a GaussianMixture, got {type(gm).__name__}")
    x = check_tensor("x", x, ndim=2)
    if x.shape[1] != gm.dim:
        raise ValueError(f"x must have shape (n, {gm.dim}), got {tuple(x.shape)}")
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(check_positive("sigma", sigma, allow_zero=True), dtype=x.dtype, device=x.device)
    sigma = check_tensor("sigma", sigma, ndim=(0, 1))
    if sigma.ndim == 1 and sigma.shape[0] != x.shape[0]:
        raise ValueError(f"sigma of shape (n,) must have n={x.shape[0]} entries, got {sigma.shape[0]}")
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0")
    n, d = x.shape
    w, mu, cov = (t.to(device=x.device, dtype=x.dtype) for t in (gm.weights, gm.means, gm.covs))
    s2 = (sigma**2).reshape(-1, 1, 1, 1) if sigma.ndim == 1 else sigma**2
    C = cov + s2 * torch.eye(d, dtype=x.dtype, device=x.device)  # (K, d, d) or (n, K, d, d)
    L = torch.linalg.cholesky(C)
    diff = (x[:, None, :] - mu).unsqueeze(-1)  # (n, K, d, 1)
    z = torch.linalg.solve_triangular(L, diff, upper=False).squeeze(-1)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    comp = -0.5 * ((z * z).sum(-1) + logdet + d * math.log(2 * math.pi))
    return torch.logsumexp(comp + torch.log(w), dim=-1)


def heat_spectral_1d(p0: torch.Tensor, dx: float, sigma: float) -> torch.Tensor:
    r"""Solve the 1-D heat equation on a periodic grid by Fourier transform (equation :eq:`ode-fourier`).

    Multiplies the discrete Fourier transform of ``p0`` by :math:`e^{-\frac12\sigma^2\omega^2}`,
    which is the exact solution of :math:`\partial_tp=D_t\partial_x^2p` after
    :math:`\sigma^2=2\int_0^tD_s\,ds`. ``p0``: ``(m,)`` values on a uniform periodic grid of
    spacing ``dx``; returns ``(m,)`` (real, same dtype).
    """
    p0 = check_tensor("p0", p0, ndim=1)
    if p0.numel() < 2:
        raise ValueError(f"p0 must hold at least 2 grid values, got {p0.numel()}")
    dx = check_positive("dx", dx)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    m = p0.shape[0]
    omega = 2 * math.pi * torch.fft.rfftfreq(m, d=dx, dtype=p0.dtype, device=p0.device)
    return torch.fft.irfft(torch.fft.rfft(p0) * torch.exp(-0.5 * sigma**2 * omega**2), n=m)


def _laplacian_symbol_1d(m: int, dx: float, like: torch.Tensor) -> torch.Tensor:
    r"""Eigenvalues :math:`-\frac4{dx^2}\sin^2(\pi k/m)` of the periodic second-difference matrix, for ``rfft`` modes."""
    k = torch.arange(m // 2 + 1, dtype=like.dtype, device=like.device)
    return -4.0 / dx**2 * torch.sin(math.pi * k / m) ** 2


def _check_grid_1d(p0: torch.Tensor, dx: float) -> tuple[torch.Tensor, float]:
    p0 = check_tensor("p0", p0, ndim=1)
    if p0.numel() < 3:
        raise ValueError(f"p0 must hold at least 3 grid values, got {p0.numel()}")
    return p0, check_positive("dx", dx)


def heat_crank_nicolson_1d(p0: torch.Tensor, dx: float, sigmas) -> torch.Tensor:
    r"""Crank–Nicolson for the 1-D heat equation :math:`\partial_tp=D_t\partial_x^2p` on a periodic grid (equation :eq:`ode-heat-cn`).

    With central second differences :math:`L` and a time grid :math:`t_0<\dots<t_N`, each step solves

    .. math:: \big(I-\tfrac12a_nL\big)p^{n+1}=\big(I+\tfrac12a_nL\big)p^n,\qquad
              a_n=\int_{t_n}^{t_{n+1}}D_t\,dt=\tfrac12\big(\sigma_{t_{n+1}}^2-\sigma_{t_n}^2\big),

    second order in the step. The grid is periodic, so :math:`L` is circulant and the linear
    system is solved exactly in its eigenbasis (the discrete Fourier modes).

    Args:
        p0: ``(m,)`` values on a uniform periodic grid of spacing ``dx``.
        sigmas: the increasing sequence :math:`\sigma_{t_0}<\dots<\sigma_{t_N}` (``N >= 1`` steps),
            i.e. the schedule evaluated on the time grid.

    Returns:
        ``(m,)``: the solution at :math:`t_N`.
    """
    p0, dx = _check_grid_1d(p0, dx)
    sig = check_tensor("sigmas", torch.as_tensor(sigmas, dtype=torch.float64), ndim=1)
    if sig.numel() < 2 or (sig < 0).any() or (torch.diff(sig) <= 0).any():
        raise ValueError("sigmas must be >= 0, strictly increasing, with at least 2 entries")
    lam = _laplacian_symbol_1d(p0.shape[0], dx, p0)
    a = 0.5 * torch.diff(sig**2).to(p0.dtype)
    factor = torch.prod((1 + 0.5 * a[:, None] * lam) / (1 - 0.5 * a[:, None] * lam), dim=0)
    return torch.fft.irfft(torch.fft.rfft(p0) * factor, n=p0.shape[0])


def heat_semidiscrete_1d(p0: torch.Tensor, dx: float, sigma: float) -> torch.Tensor:
    r"""The exact-in-time solution :math:`p(\sigma)=e^{\frac12\sigma^2L}p_0` of the space-discretised heat
    equation :math:`\dot p=D_tLp` (periodic central differences), the reference that isolates the
    time error of :func:`heat_crank_nicolson_1d`. ``p0``: ``(m,)``; returns ``(m,)``."""
    p0, dx = _check_grid_1d(p0, dx)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    lam = _laplacian_symbol_1d(p0.shape[0], dx, p0)
    return torch.fft.irfft(torch.fft.rfft(p0) * torch.exp(0.5 * sigma**2 * lam), n=p0.shape[0])


def csm_piecewise_fit(x: torch.Tensor, target: torch.Tensor, edges: torch.Tensor) -> dict:
    r"""Least-squares fit of a piecewise-constant field to ``target`` (the minimiser of the conditional
    score-matching loss :eq:`ode-csm` over functions constant on the cells of a grid).

    The minimiser over such functions is the cell average of the target. Because the
    conditional score :math:`-(x-x_0)/\sigma^2` averages to the score given :math:`x`, this cell
    average estimates the *cell average of the true score*, with no bias at any cell size.

    Args:
        x: ``(n, d)`` points; cells are the products of the 1-D intervals ``edges`` ``(k+1,)`` in every
            coordinate (points outside are dropped).
        target: ``(n, d)`` values to average (the conditional score, or the exact score for comparison).

    Returns:
        ``{'mean': (K, d), 'se': (K, d), 'count': (K,), 'cell': (n,)}`` with ``K = k**d`` cells
        (``cell = -1`` for dropped points; empty cells have ``mean = se = nan``).
    """
    x = check_batch("x", x, min_ndim=2)
    target = check_tensor("target", target)
    if target.shape != x.shape or x.ndim != 2:
        raise ValueError(f"x and target must both have shape (n, d), got {tuple(x.shape)} and {tuple(target.shape)}")
    edges = check_tensor("edges", torch.as_tensor(edges, dtype=x.dtype), ndim=1)
    if edges.numel() < 2 or (torch.diff(edges) <= 0).any():
        raise ValueError("edges must be strictly increasing with at least 2 entries")
    n, d = x.shape
    k = edges.numel() - 1
    idx = torch.bucketize(x.contiguous(), edges.contiguous(), right=True) - 1      # (n, d) in 0..k-1 if inside
    inside = ((idx >= 0) & (idx < k)).all(1)
    cell = torch.zeros(n, dtype=torch.long, device=x.device)
    for j in range(d):
        cell = cell * k + idx[:, j].clamp(0, k - 1)
    cell = torch.where(inside, cell, torch.full_like(cell, -1))
    K = k**d
    c = cell[inside]
    y = target[inside]
    count = torch.bincount(c, minlength=K).to(x.dtype)
    s1 = torch.zeros(K, d, dtype=x.dtype, device=x.device).index_add_(0, c, y)
    s2 = torch.zeros(K, d, dtype=x.dtype, device=x.device).index_add_(0, c, y * y)
    mean = s1 / count[:, None]
    var = (s2 / count[:, None] - mean**2) * count[:, None] / (count[:, None] - 1)
    se = (var.clamp_min(0) / count[:, None]).sqrt()
    return {"mean": mean, "se": se, "count": count, "cell": cell}


def log_density_along_path(score_fn: ScoreFn, x: torch.Tensor, sigmas, log_p0: torch.Tensor, *,
                           rtol: float = 1e-9, atol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Carry points and their log-density forward along the heat ODE, :math:`\frac{d}{du}\log p(x_u)=-\nabla\!\cdot v(x_u,u)`
    (equations :eq:`ode-continuity` and :eq:`ode-loglik`, :math:`u=\log\sigma`, :math:`v=-\sigma^2\nabla\log p_\sigma`).

    Starting from ``x`` ``(n, d)`` at ``sigmas[0]`` with known values ``log_p0`` ``(n,)``, integrates
    the ODE and the exact (autograd) divergence with :func:`solve_adaptive` through the increasing
    ``sigmas`` ``(k+1,)``, and returns ``(xs (k+1, n, d), log_p (k+1, n))``: the points and the
    log-density that mass conservation predicts for them at every ``sigmas[i]``.
    """
    _check_callable("score_fn", score_fn)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig_t = check_tensor("sigmas", torch.as_tensor(sigmas, dtype=torch.float64), ndim=1)
    if sig_t.numel() < 2 or not (sig_t > 0).all() or (torch.diff(sig_t) <= 0).any():
        raise ValueError("sigmas must be > 0 and strictly increasing, with at least 2 entries")
    sig = sig_t.tolist()
    log_p0 = check_tensor("log_p0", log_p0, ndim=1)
    if log_p0.shape != (x.shape[0],):
        raise ValueError(f"log_p0 must have shape ({x.shape[0]},), got {tuple(log_p0.shape)}")
    shape = x.shape

    def fn(state, u):
        z = state[:, :-1].reshape(shape)
        s = math.exp(u)
        v, div = divergence(lambda y: -(s**2) * _score(score_fn, y, s), z, method="exact")
        return torch.cat([v.flatten(1), -div[:, None]], dim=1)

    state = torch.cat([x.detach().flatten(1), log_p0.detach().to(x.dtype)[:, None]], dim=1)
    xs, lps = [x.detach().clone()], [log_p0.detach().to(x.dtype).clone()]
    for a, b in itertools.pairwise(sig):
        state, _ = solve_adaptive(fn, state, math.log(a), math.log(b), rtol=rtol, atol=atol)
        xs.append(state[:, :-1].reshape(shape).clone())
        lps.append(state[:, -1].clone())
    return torch.stack(xs), torch.stack(lps)


# ==================================================================== the ODE's velocity
def sigma_grid(n: int, sigma_min: float = 2e-3, sigma_max: float = 80.0, rho: float = 7.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""Karras et al.'s decreasing grid of ``n + 1`` noise levels (equation :eq:`ode-grid`):
    :math:`\sigma_i=(\sigma_{\max}^{1/\rho}+\tfrac in(\sigma_{\min}^{1/\rho}-\sigma_{\max}^{1/\rho}))^\rho`,
    ``i = 0..n``, ``1 <= n <= MAX_STEPS`` (``companion.core.utils.MAX_STEPS``). ``rho = 1`` is uniform in :math:`\sigma`; large ``rho`` tends to uniform in
    :math:`\log\sigma`. Returns ``(n + 1,)`` from ``sigma_max`` to ``sigma_min``."""
    n = check_int("n", n, minimum=1, maximum=MAX_STEPS)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    rho = check_positive("rho", rho)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64 (an integer grid would round to zeros), got {dtype}")
    i = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    s[0], s[-1] = sigma_max, sigma_min
    return s.to(dtype)


def heat_velocity(score_fn: ScoreFn, x: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""The ODE in the noise level, :math:`dx/d\sigma=-\sigma\nabla\log p_\sigma(x)` (equation :eq:`ode-sigma`).

    ``x``: ``(n, ...)`` -> ``(n, ...)``. Equal to :math:`(x-\hat x_0)/\sigma` (k-diffusion's ``to_d``).
    """
    sigma = check_positive("sigma", sigma)
    return -sigma * _score(score_fn, x, sigma)


def _sigma_and_rate(sigma_fn: Callable[[torch.Tensor], torch.Tensor], t: float) -> tuple[float, float]:
    tt = torch.tensor(float(t), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        s = sigma_fn(tt)
        if not isinstance(s, torch.Tensor) or s.numel() != 1:
            raise TypeError("sigma_fn must map a 0-d float64 tensor t to a 0-d tensor sigma(t)")
        (ds,) = torch.autograd.grad(s, tt, allow_unused=True)
    ds = torch.zeros(()) if ds is None else ds
    return float(s.detach()), float(ds)


def heat_drift(score_fn: ScoreFn, x: torch.Tensor, t: float,
               sigma_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    r"""The heat-equation ODE in an arbitrary time, :math:`dx/dt=-\dot\sigma_t\sigma_t\nabla\log p_t(x)`
    (equation :eq:`ode-model`), with :math:`\dot\sigma_t` from autograd on ``sigma_fn``.

    ``sigma_fn``: a differentiable map from a 0-d float64 tensor ``t`` to :math:`\sigma(t)>0`.
    ``x``: ``(n, ...)`` -> ``(n, ...)``.
    """
    _check_callable("sigma_fn", sigma_fn)
    sigma, rate = _sigma_and_rate(sigma_fn, t)
    if not sigma > 0:
        raise ValueError(f"sigma_fn(t) must be > 0, got sigma({t:.6g}) = {sigma}")
    return -rate * sigma * _score(score_fn, x, sigma)


def pf_ode_drift(schedule: ContinuousSchedule, score_fn_t: Callable[[torch.Tensor, float], torch.Tensor],
                 x: torch.Tensor, t: float) -> torch.Tensor:
    r"""Probability-flow ODE of a linear SDE, :math:`dx/dt=f_tx-\tfrac12g_t^2\nabla\log p_t(x)` (equation :eq:`ode-pf`).

    ``schedule`` supplies :math:`f_t` and :math:`g_t^2`; ``score_fn_t(x, t)`` is the score of
    :math:`p_t`, the law of :math:`\bar\alpha_tx_0+\bar\beta_t\varepsilon` (here ``t`` is time,
    not a noise level). ``x``: ``(n, ...)`` -> ``(n, ...)``.
    """
    if not isinstance(schedule, ContinuousSchedule):
        raise TypeError(f"schedule must be a ContinuousSchedule, got {type(schedule).__name__}")
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    f = float(schedule.f(t))
    g2 = float(schedule.g2(t))
    return f * x - 0.5 * g2 * _score(score_fn_t, x, t, kind="sde-score")


def vp_to_heat(schedule: ContinuousSchedule, x: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
    r"""Rescale a point of the VP/DDIM ODE into the heat ODE's coordinates (equation :eq:`ode-vp-rescale`):
    :math:`y=x/\bar\alpha_t`, :math:`\sigma=\bar\beta_t/\bar\alpha_t`. ``x``: ``(n, ...)``."""
    if not isinstance(schedule, ContinuousSchedule):
        raise TypeError(f"schedule must be a ContinuousSchedule, got {type(schedule).__name__}")
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    a = float(schedule.alpha_bar(t))
    return x / a, float(schedule.beta_bar(t)) / a


# ==================================================================== fixed-step solvers
def _velocity(score_fn: ScoreFn, x: torch.Tensor, sigma: float, extra: Velocity | None):
    """Return (dx/dsigma, denoised) at one noise level."""
    s = _score(score_fn, x, sigma)
    d = -sigma * s
    if extra is not None:
        e = extra(x, sigma)
        if not isinstance(e, torch.Tensor) or e.shape != x.shape:
            raise ValueError(f"extra_velocity must return a tensor of shape {tuple(x.shape)}")
        d = d + e
    return d, x + sigma**2 * s


def _fixed_step(stages: str, score_fn, x, sigmas, callback, extra_velocity):
    _check_callable("score_fn", score_fn)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    if callback is not None:
        _check_callable("callback", callback)
    if extra_velocity is not None:
        _check_callable("extra_velocity", extra_velocity)
    nfe = 0
    denoised = x
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        h = s_next - s
        d1, denoised = _velocity(score_fn, x, s, extra_velocity)
        if stages == "euler":
            x_next = x + h * d1
            nfe += 1
        elif stages == "heun":
            d2, _ = _velocity(score_fn, x + h * d1, s_next, extra_velocity)
            x_next = x + h * 0.5 * (d1 + d2)
            nfe += 2
        else:  # classical RK4 in sigma
            sm = s + 0.5 * h
            d2, _ = _velocity(score_fn, x + 0.5 * h * d1, sm, extra_velocity)
            d3, _ = _velocity(score_fn, x + 0.5 * h * d2, sm, extra_velocity)
            d4, _ = _velocity(score_fn, x + h * d3, s_next, extra_velocity)
            x_next = x + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
            nfe += 4
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "sigma_next": s_next, "denoised": denoised})
        x = x_next
    return x, {"nfe": nfe, "denoised": denoised}


def sample_euler(score_fn: ScoreFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                 callback: Callable[[dict], None] | None = None,
                 extra_velocity: Velocity | None = None) -> tuple[torch.Tensor, dict]:
    r"""Euler's method for equation :eq:`ode-sigma` over the grid ``sigmas`` (first order, 1 NFE per step).

    ``x``: ``(n, ...)`` at ``sigmas[0]``; ``sigmas``: ``(N + 1,)`` strictly decreasing, all > 0.
    ``extra_velocity(x, sigma)`` adds a term to :math:`dx/d\sigma` (e.g. the divergence-free
    rotation of equation :eq:`ode-rotation`). Returns ``(x at sigmas[-1], {'nfe', 'denoised'})``.
    """
    return _fixed_step("euler", score_fn, x, sigmas, callback, extra_velocity)


def sample_heun(score_fn: ScoreFn, x: torch.Tensor, sigmas: torch.Tensor, *,
                callback: Callable[[dict], None] | None = None,
                extra_velocity: Velocity | None = None) -> tuple[torch.Tensor, dict]:
    r"""Heun's method (explicit trapezoid, second order, 2 NFE per step) for equation :eq:`ode-sigma`.

    Same arguments and return value as :func:`sample_euler`. (EDM saves the last evaluation
    when the grid ends at :math:`\sigma=0`; our grids end at :math:`\sigma_{\min}>0`.)
    """
    return _fixed_step("heun", score_fn, x, sigmas, callback, extra_velocity)


def sample_rk4(score_fn: ScoreFn, x: torch.Tensor, sigmas: torch.Tensor, *,
               callback: Callable[[dict], None] | None = None,
               extra_velocity: Velocity | None = None) -> tuple[torch.Tensor, dict]:
    r"""Classical fourth-order Runge–Kutta (4 NFE per step) for equation :eq:`ode-sigma`.

    Same arguments and return value as :func:`sample_euler`.
    """
    return _fixed_step("rk4", score_fn, x, sigmas, callback, extra_velocity)


#: Named fixed-step solvers and their order, so one loop can compare them with identical seeds.
SOLVERS: dict[str, tuple[Callable, int]] = {
    "Euler": (sample_euler, 1),
    "Heun": (sample_heun, 2),
    "RK4": (sample_rk4, 4),
}


# ====================================================================== adaptive solver
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def solve_adaptive(fn: Callable[[torch.Tensor, float], torch.Tensor], y0: torch.Tensor, t0: float, t1: float, *,
                   rtol: float = 1e-6, atol: float = 1e-6, h0: float | None = None,
                   max_steps: int = 100_000) -> tuple[torch.Tensor, dict]:
    r"""Integrate :math:`dy/dt=\mathrm{fn}(y,t)` from ``t0`` to ``t1`` (either direction) with the
    Dormand–Prince 5(4) pair and one step size for the whole batch.

    The local error is measured per sample as the RMS over its coordinates of
    :math:`e/(\mathrm{atol}+\mathrm{rtol}\max(|y|,|y_{\rm new}|))` and the *worst* sample controls
    the step, so every trajectory meets the tolerance. ``y0``: ``(n, ...)``. Returns
    ``(y(t1), {'nfe', 'steps', 'rejected'})``.
    """
    _check_callable("fn", fn)
    y = check_batch("y0", y0, min_ndim=2, allow_empty=True)
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t0 and t1 must be finite, got {t0}, {t1}")
    if t0 == t1 or y.shape[0] == 0:  # nothing to integrate (an empty batch gives an empty result)
        return y.clone(), {"nfe": 0, "steps": 0, "rejected": 0}
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)

    def call(yy, tt):
        out = fn(yy, tt)
        if not isinstance(out, torch.Tensor) or out.shape != yy.shape:
            raise ValueError(f"fn must return a tensor of shape {tuple(yy.shape)}")
        if not torch.isfinite(out).all():
            raise ValueError(f"fn returned NaN or infinite values at t={tt:.6g}")
        return out.to(yy.dtype)

    def err_norm(e, ya, yb):
        scale = atol + rtol * torch.maximum(ya.abs(), yb.abs())
        return ((e / scale) ** 2).flatten(1).mean(1).sqrt().max().item()

    t = t0
    k1 = call(y, t)
    nfe, steps, rejected = 1, 0, 0
    if h0 is None:  # Hairer–Nørsett–Wanner's starting step
        d0 = err_norm(y, y, y)
        d1 = err_norm(k1, y, y)
        h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h = min(h, span)
    else:
        h = min(check_positive("h0", h0), span)
    while direction * (t1 - t) > 1e-14 * max(1.0, abs(t1)):
        if steps + rejected >= max_steps:
            raise RuntimeError(f"solve_adaptive: max_steps={max_steps} reached at t={t:.6g}; loosen rtol/atol")
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            yi = y + hs * sum(a * k for a, k in zip(_DP_A[i], ks, strict=False) if a != 0.0)
            ks.append(call(yi, t + _DP_C[i] * hs))
        nfe += 6
        y5 = y + hs * sum(b * k for b, k in zip(_DP_B5, ks, strict=True) if b != 0.0)
        e = hs * sum((b5 - b4) * k for b5, b4, k in zip(_DP_B5, _DP_B4, ks, strict=True))
        err = err_norm(e, y, y5)
        if err <= 1.0:
            t = t1 if abs(t1 - (t + hs)) < 1e-14 * max(1.0, abs(t1)) else t + hs
            y, k1 = y5, ks[6]  # first same as last
            steps += 1
        else:
            rejected += 1
        h *= min(5.0, max(0.2, 0.9 * (err + 1e-16) ** -0.2))
    return y, {"nfe": nfe, "steps": steps, "rejected": rejected}


def sample_adaptive(score_fn: ScoreFn, x: torch.Tensor, sigma_max: float, sigma_min: float, *,
                    rtol: float = 1e-6, atol: float = 1e-6) -> tuple[torch.Tensor, dict]:
    r"""Reference solution of equation :eq:`ode-sigma` from ``sigma_max`` to ``sigma_min`` (or back).

    Integrates in :math:`u=\log\sigma`, where the ODE reads :math:`dx/du=-\sigma^2\nabla\log p_\sigma`
    and stays well scaled as :math:`\sigma\to0`. Passing ``sigma_max < sigma_min`` runs the
    ODE forward (data to noise, an *encoder*). ``x``: ``(n, ...)``; returns ``(x, info)``.
    """
    _check_callable("score_fn", score_fn)
    sigma_max = check_positive("sigma_max", sigma_max)
    sigma_min = check_positive("sigma_min", sigma_min)

    def fn(y, u):
        s = math.exp(u)
        return -(s**2) * _score(score_fn, y, s)

    return solve_adaptive(fn, check_batch("x", x, min_ndim=2, allow_empty=True), math.log(sigma_max), math.log(sigma_min), rtol=rtol, atol=atol)


# =========================================================== divergence and likelihood
def batch_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    r"""Per-sample Jacobians :math:`\partial\,\mathrm{fn}(x)_n/\partial x_n` of a batched map,
    ``x``: ``(n, D)`` -> ``(n, D, D)`` (one backward pass per output coordinate; for small D)."""
    _check_callable("fn", fn)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, D), got {tuple(x.shape)}")
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        y = _field_value(fn, xx)
        if not y.requires_grad:  # a field that does not depend on x: its Jacobian is zero
            return torch.zeros(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
        rows = [_grad_or_zero(y[:, i].sum(), xx, retain_graph=i < x.shape[1] - 1)
                for i in range(x.shape[1])]
    jac = torch.stack(rows, dim=1)
    if not torch.isfinite(jac).all():
        raise ValueError("the Jacobian of fn has NaN or infinite entries at x")
    return jac


def _field_value(fn: Callable[[torch.Tensor], torch.Tensor], xx: torch.Tensor) -> torch.Tensor:
    """``fn(xx)`` checked: a finite tensor of ``xx``'s shape."""
    y = fn(xx)
    if not isinstance(y, torch.Tensor) or y.shape != xx.shape:
        raise ValueError(f"fn must return a tensor of shape {tuple(xx.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("fn returned NaN or infinite values")
    return y


def _grad_or_zero(out: torch.Tensor, xx: torch.Tensor, grad_outputs=None, *, retain_graph: bool) -> torch.Tensor:
    """``d out / d xx`` (a vector-Jacobian product with ``grad_outputs``), zero where ``out`` does not depend on ``xx``."""
    (g,) = torch.autograd.grad(out, xx, grad_outputs, retain_graph=retain_graph, allow_unused=True)
    return torch.zeros_like(xx) if g is None else g


def divergence(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, method: str = "exact",
               probes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Divergence :math:`\nabla\!\cdot\mathrm{fn}(x)` of a batched vector field, with its value.

    ``method='exact'``: the trace of the Jacobian, one backward pass per coordinate.
    ``method='hutchinson'``: :math:`\frac1P\sum_p\varepsilon_p^\top J\varepsilon_p` with the
    given ``probes`` of shape ``(P, n, ...)`` (Rademacher or Gaussian, equation :eq:`ode-hutchinson`),
    unbiased, one backward pass per probe. ``x``: ``(n, ...)``. Returns
    ``(fn(x) detached, divergence (n,))``.
    """
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    if method == "hutchinson":
        probes = check_tensor("probes", probes) if probes is not None else None
        if probes is None or probes.ndim != x.ndim + 1 or probes.shape[1:] != x.shape:
            raise ValueError(f"probes must have shape (P, *{tuple(x.shape)}) for method='hutchinson'")
    P = 0 if probes is None else probes.shape[0]
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        y = _field_value(fn, xx)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not y.requires_grad:  # a constant field: zero divergence
            return y.detach(), div
        if method == "exact":
            yf = y.flatten(1)
            D = yf.shape[1]
            for i in range(D):
                gi = _grad_or_zero(yf[:, i].sum(), xx, retain_graph=i < D - 1)
                div = div + gi.flatten(1)[:, i]
        else:
            for p in range(P):
                eps = probes[p].to(x.dtype)  # type: ignore[index]  # set for 'hutchinson' (checked above)
                vjp = _grad_or_zero(y, xx, eps, retain_graph=p < P - 1)
                div = div + (vjp * eps).flatten(1).sum(1)
            div = div / P
    if not torch.isfinite(div).all():
        raise ValueError("the divergence of fn is NaN or infinite at x")
    return y.detach(), div.detach()


def gaussian_log_prob(x: torch.Tensor, std: float) -> torch.Tensor:
    r"""Log-density of :math:`\mathcal N(0,\mathrm{std}^2I)`, ``x``: ``(n, ...)`` -> ``(n,)``."""
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    std = check_positive("std", std)
    D = math.prod(x.shape[1:])
    return -0.5 * (x.flatten(1) ** 2).sum(1) / std**2 - D * math.log(std) - 0.5 * D * math.log(2 * math.pi)


def log_likelihood(score_fn: ScoreFn, x: torch.Tensor, *, sigma_min: float, sigma_max: float,
                   prior_logp: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   method: str = "exact", n_probes: int = 1, probe: str = "rademacher",
                   generator: torch.Generator | int | None = None,
                   rtol: float = 1e-6, atol: float = 1e-6) -> tuple[torch.Tensor, dict]:
    r"""Log-likelihood of ``x`` under the model's :math:`p_{\sigma_{\min}}` by the instantaneous
    change of variables (equation :eq:`ode-loglik`):

    .. math:: \log p_{\sigma_{\min}}(x)=\log p_{\sigma_{\max}}(x_{\sigma_{\max}})
              +\int_{\log\sigma_{\min}}^{\log\sigma_{\max}}\nabla\!\cdot v(x_u,u)\,du,

    .. math:: v=-\sigma^2\nabla\log p_\sigma,\qquad u=\log\sigma,

    integrating the ODE and the divergence together with :func:`solve_adaptive`.
    ``method='exact'`` uses the autograd trace, ``'hutchinson'`` ``n_probes`` fixed probes
    (``'rademacher'`` or ``'gaussian'``, drawn once from ``generator`` and kept along the
    path). ``prior_logp`` defaults to :math:`\mathcal N(0,\sigma_{\max}^2I)`; pass the exact
    :math:`\log p_{\sigma_{\max}}` to remove the prior mismatch. ``x``: ``(n, ...)``.
    Returns ``(logp (n,), {'nfe', 'prior_logp', 'delta', 'latent'})``.
    """
    _check_callable("score_fn", score_fn)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    n_probes = check_int("n_probes", n_probes, minimum=1)
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    if prior_logp is None:
        prior_logp = lambda z: gaussian_log_prob(z, sigma_max)
    _check_callable("prior_logp", prior_logp)
    probes = None
    if method == "hutchinson":
        g = make_generator(generator, x.device)
        probes = torch.randn((n_probes, *x.shape), generator=g, dtype=x.dtype, device=x.device)
        if probe == "rademacher":
            probes = probes.sign()
    n, shape = x.shape[0], x.shape

    def fn(state, u):
        z = state[:, :-1].reshape(shape)
        s = math.exp(u)
        v, div = divergence(lambda y: -(s**2) * _score(score_fn, y, s), z, method=method, probes=probes)
        return torch.cat([v.flatten(1), div[:, None]], dim=1)

    state0 = torch.cat([x.detach().flatten(1), torch.zeros(n, 1, dtype=x.dtype, device=x.device)], dim=1)
    state1, info = solve_adaptive(fn, state0, math.log(sigma_min), math.log(sigma_max), rtol=rtol, atol=atol)
    latent = state1[:, :-1].reshape(shape)
    delta = state1[:, -1]
    lp = prior_logp(latent)
    if not isinstance(lp, torch.Tensor) or lp.shape != (n,):
        raise ValueError(f"prior_logp must return a tensor of shape ({n},)")
    if not torch.isfinite(lp).all():
        raise ValueError("prior_logp returned NaN or infinite values at the latent points")
    return lp.to(x.dtype) + delta, {"nfe": info["nfe"], "prior_logp": lp, "delta": delta, "latent": latent}


# ============================================================================ training


