r"""Chapter 5 — fast samplers derived from the form of chapter 3's diffusion ODE.

The ODE of chapter 3 in the noise level, :math:`dx/d\sigma=(x-\hat x_0(x,\sigma))/\sigma`
(equation :eq:`ode-sigma`), is *semi-linear*: a linear part in :math:`x` plus the denoiser. Every
sampler here integrates the linear part exactly and approximates only what is left.

**Coordinates** (equation :eq:`fast-coords`). Split the denoiser into the denoiser of a reference
Gaussian :math:`\mathcal N(\mu,s^2I)` and a residual,

.. math:: \hat x_0(x,\sigma)=\mu+\tfrac{s^2}{s^2+\sigma^2}(x-\mu)+R(x,\sigma).

With :math:`\Phi(\sigma)=\sqrt{s^2+\sigma^2}`, :math:`y=(x-\mu)/\Phi(\sigma)` and the new time
:math:`\tau(\sigma)=\operatorname{arsinh}(s/\sigma)/s` (:math:`=1/\sigma` when :math:`s=0`), the
ODE becomes :math:`dy/d\tau=R(x,\sigma)` (equation :eq:`fast-ode`): the linear part has disappeared
into the change of variables. For :math:`s=0` this is DPM-Solver++'s form
:math:`d(x/\sigma)/d(1/\sigma)=\hat x_0`; for a Gaussian law :math:`\mathcal N(\mu,s^2I)`,
:math:`R\equiv0` and every sampler below is exact for any step (equation :eq:`fast-gauss`).

**Exponential multistep** (equation :eq:`fast-multistep`). In :math:`\ell=\log\tau` (:math:`=-\log\sigma`
for :math:`s=0`), :math:`y_{i+1}=y_i+\int_{\ell_i}^{\ell_{i+1}}e^{\ell}R\,d\ell`, and :math:`R` is
replaced by the polynomial through its last ``order`` values: DPM-Solver++(2M) and (3M)
(:func:`sample_dpmpp_2m`, :func:`sample_dpmpp_3m`). The UniPC-style corrector (:func:`sample_unipc`)
reuses the evaluation at the new point, which the next step needs anyway, to interpolate
through one more node: one order more for no extra model call.

**Conventions.** A *denoiser* is any callable ``denoiser(x, sigma) -> (n, ...)`` giving
:math:`\hat x_0(x,\sigma)` for ``x`` of shape ``(n, ...)`` and a Python float ``sigma``
(k-diffusion's model interface with one noise level per call); :func:`gmm_denoiser` builds the
exact one of the laboratory, :func:`~companion.diffusion.precond.denoiser_from_score` wraps a score function of
:mod:`companion.diffusion.ode`. Samplers are plain functions over a strictly decreasing grid
``sigmas`` of noise levels, all > 0 (e.g. :func:`companion.diffusion.ode.sigma_grid`), and return
``(x, info)`` with ``info['nfe']`` counting every call of the denoiser; ``callback`` receives
``{'i', 'x', 'sigma', 'sigma_next', 'denoised'}`` once per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.gmm import GaussianMixture
from ..core.utils import MAX_STEPS, check_batch, check_int, check_kind, check_positive, make_generator
from .ode import _check_sigma_range, _check_sigmas, gmm_score_fn
from .precond import Denoiser, denoiser_from_score, score_from_denoiser  # noqa: F401  (kept importable here)

__all__ = [
    "gmm_denoiser",
    "fast_coordinates",
    "sample_multistep",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_taylor",
    "sample_dpmpp_3m",
    "sample_unipc",
    "sample_lms",
    "sample_dpm_adaptive",
    "sample_euler_ancestral",
    "sample_dpmpp_2m_sde",
    "sample_heun_churn",
    "reference_solution",
    "pathwise_error",
    "warped_grid",
    "karras_warp",
    "optimize_grid",
    "SAMPLERS",
    "SamplerInfo",
    "FAST_SAMPLERS",
    "LOWER_ORDER_FINAL_BELOW",
]


# ============================================================================ model wrappers
def gmm_denoiser(gm: GaussianMixture) -> Denoiser:
    r"""Exact denoiser :math:`\hat x_0(x,\sigma)=x+\sigma^2\nabla\log p_\sigma(x)` (Tweedie) of the
    mixture ``gm`` noised by :math:`\mathcal N(0,\sigma^2I)`; ``x``: ``(n, d)`` -> ``(n, d)``.

    Uses the laboratory's fast score path (:func:`companion.diffusion.ode.gmm_score_fn`)."""
    return denoiser_from_score(gmm_score_fn(gm))



class _Counted:
    """Call the denoiser, check its output, count the calls (the honest NFE)."""

    def __init__(self, denoiser: Denoiser):
        check_kind(denoiser, "denoiser", "denoiser")
        self.fn, self.nfe = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        out = self.fn(x, float(sigma))
        self.nfe += 1
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise ValueError(f"denoiser must return a tensor of x's shape {tuple(x.shape)}")
        if out.device.type != "meta" and not bool(torch.isfinite(out).all()):
            raise ValueError(f"denoiser returned NaN or infinite values at sigma={sigma:.6g}")
        return out if out.dtype == x.dtype else out.to(x.dtype)


def _check_callback(callback) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")


# ============================================================================ coordinates
class _Coords:
    r"""The change of variables of equation :eq:`fast-coords` for a reference :math:`\mathcal N(\mu,s^2I)`."""

    def __init__(self, x: torch.Tensor, ref_mean, ref_std):
        self.s = check_positive("ref_std", ref_std, allow_zero=True)
        self.mu: torch.Tensor | float
        if isinstance(ref_mean, torch.Tensor):
            try:
                torch.broadcast_shapes(ref_mean.shape, x.shape[1:])
            except RuntimeError as err:
                raise ValueError(f"ref_mean of shape {tuple(ref_mean.shape)} does not broadcast to "
                                 f"a point of shape {tuple(x.shape[1:])}") from err
            self.mu = ref_mean.to(dtype=x.dtype, device=x.device)
        elif isinstance(ref_mean, (int, float)) and not isinstance(ref_mean, bool) and math.isfinite(ref_mean):
            self.mu = float(ref_mean)
        else:
            raise TypeError(f"ref_mean must be a finite float or a tensor, got {ref_mean!r}")

    def tau(self, sigma: float) -> float:
        s = self.s
        return 1.0 / sigma if s == 0 else math.asinh(s / sigma) / s

    def sigma(self, tau: float) -> float:
        s = self.s
        return 1.0 / tau if s == 0 else s / math.sinh(s * tau)

    def phi(self, sigma: float) -> float:
        return math.hypot(self.s, sigma)

    def to_y(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (x - self.mu) / self.phi(sigma)

    def to_x(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        if isinstance(self.mu, torch.Tensor):
            return torch.add(self.mu, y, alpha=self.phi(sigma))
        return y.mul(self.phi(sigma)).add_(self.mu)

    def residual(self, denoised: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
        r""":math:`R=\hat x_0-\mu-c(x-\mu)=\hat x_0-cx-(1-c)\mu`, :math:`c=s^2/(s^2+\sigma^2)`."""
        c = self.s**2 / (self.s**2 + sigma**2)
        r = denoised.add(x, alpha=-c) if c > 0 else denoised.clone()
        if isinstance(self.mu, torch.Tensor):
            return r.sub_(self.mu, alpha=1 - c)
        return r.sub_((1 - c) * self.mu) if self.mu != 0 else r


def _combine(base: torch.Tensor, coeffs, tensors) -> torch.Tensor:
    """``base + sum(c * t)`` with one fused operation per term."""
    out = None
    for cj, tj in zip(coeffs, tensors, strict=True):
        out = base.add(tj, alpha=cj) if out is None else out.add_(tj, alpha=cj)
    return base.clone() if out is None else out


def fast_coordinates(sigma: float, ref_std: float = 0.0) -> tuple[float, float]:
    r"""The time and scale of equation :eq:`fast-coords`: returns
    :math:`(\tau(\sigma),\Phi(\sigma))=(\operatorname{arsinh}(s/\sigma)/s,\ \sqrt{s^2+\sigma^2})`,
    with :math:`\tau=1/\sigma` for ``ref_std = 0``. In these coordinates the ODE reads
    :math:`d[(x-\mu)/\Phi]/d\tau=R`."""
    sigma = check_positive("sigma", sigma)
    c = _Coords(torch.zeros(1, 1), 0.0, ref_std)
    return c.tau(sigma), c.phi(sigma)


_MS_GROW = 1.5  # largest step growth of the multistep pair (see sample_dpm_adaptive)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


def _weights_many(nodes: np.ndarray, a: np.ndarray, b: np.ndarray, exponential: bool) -> np.ndarray:
    """:func:`_weights` for ``M`` steps at once: ``nodes`` ``(M, k)``, ``a``, ``b`` ``(M,)`` -> ``(M, k)``."""
    t = 0.5 * (b - a)[:, None] * _GL_X + 0.5 * (a + b)[:, None]  # (M, 16)
    w = 0.5 * (b - a)[:, None] * _GL_W
    if exponential:
        w = w * np.exp(t)
    k = nodes.shape[1]
    out = np.empty(nodes.shape)
    for j in range(k):
        L = np.ones_like(t)
        for m in range(k):
            if m != j:
                L = L * (t - nodes[:, m : m + 1]) / (nodes[:, j : j + 1] - nodes[:, m : m + 1])
        out[:, j] = (w * L).sum(1)
    return out


def _multistep_plan(ell: list[float], order: int, corrector: bool, lower_order_final: bool):
    """Predictor (and corrector) weights of every step, computed before the loop, grouped by order."""
    n_steps = len(ell) - 1
    e = np.asarray(ell)
    ks = [min(order, i + 1, n_steps - i if lower_order_final else order) for i in range(n_steps)]
    kcs = [min(order, i + 1) + 1 for i in range(n_steps - 1)]
    pred: list = [None] * n_steps
    corr: list = [None] * (n_steps - 1)
    for k in set(ks):
        steps = np.array([i for i in range(n_steps) if ks[i] == k])
        nodes = np.stack([e[steps - j] for j in range(k)], axis=1)
        for i, w in zip(steps, _weights_many(nodes, e[steps], e[steps + 1], True), strict=True):
            pred[i] = w.tolist()
    if corrector:
        for kc in set(kcs):
            steps = np.array([i for i in range(n_steps - 1) if kcs[i] == kc])
            nodes = np.stack([e[steps + 1]] + [e[steps - j] for j in range(kc - 1)], axis=1)
            for i, w in zip(steps, _weights_many(nodes, e[steps], e[steps + 1], True), strict=True):
                corr[i] = w.tolist()
    return pred, corr


def _weights(nodes: list[float], a: float, b: float, exponential: bool) -> list[float]:
    r""":math:`\int_a^b w(t)L_j(t)\,dt` for the Lagrange basis :math:`L_j` on ``nodes``, with
    :math:`w=e^t` (``exponential``) or 1. Gauss–Legendre with 16 nodes: exact for the
    polynomial case, and for :math:`e^t\times` a cubic on an interval of length :math:`h`
    the error is below :math:`(h/2)^{33}/33!` relative, i.e. float rounding for :math:`h<8`."""
    t = 0.5 * (b - a) * _GL_X + 0.5 * (a + b)
    w = 0.5 * (b - a) * _GL_W
    if exponential:
        w = w * np.exp(t)
    out = []
    for j, nj in enumerate(nodes):
        L = np.ones_like(t)
        for m, nm in enumerate(nodes):
            if m != j:
                L = L * (t - nm) / (nj - nm)
        out.append(float((w * L).sum()))
    return out


# ======================================================================= fixed-step multistep
def _auto_lower_order_final(lower_order_final: bool | None, n_steps: int) -> bool:
    """``None`` means on below :data:`LOWER_ORDER_FINAL_BELOW` steps (diffusers' rule)."""
    if lower_order_final is None:
        return n_steps < LOWER_ORDER_FINAL_BELOW
    if not isinstance(lower_order_final, bool):
        raise TypeError(f"lower_order_final must be a bool or None (automatic), got {type(lower_order_final).__name__}")
    return lower_order_final


#: ``lower_order_final=None`` lowers the order of the last steps of a grid with fewer steps than this.
#: On a grid that ends at a small ``sigma_min`` the last step is the longest in :math:`\log\sigma`;
#: extrapolating the residual polynomial over it is what breaks 10-step high-order samplers, with the
#: exact denoiser as well as with a network.
LOWER_ORDER_FINAL_BELOW = 15


@torch.no_grad()
def sample_multistep(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, order: int = 2,
                     corrector: bool = False, ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0,
                     lower_order_final: bool | None = None,
                     callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""Exponential multistep sampler of equation :eq:`fast-multistep` (one model call per step).

    In the coordinates of equation :eq:`fast-coords` (reference :math:`\mathcal N(\mu,s^2I)` with
    ``ref_mean``, ``ref_std``), each step from :math:`\sigma_i` to :math:`\sigma_{i+1}` is

    .. math:: y_{i+1}=y_i+\sum_{j}w_{ij}R_j,\qquad
              w_{ij}=\int_{\ell_i}^{\ell_{i+1}}e^{\ell}L_j(\ell)\,d\ell,\quad \ell=\log\tau,

    with :math:`L_j` the Lagrange polynomials through the last ``order`` nodes
    (Adams–Bashforth; fewer at the start). ``corrector=True`` adds the UniPC-style corrector
    (equation :eq:`fast-corrector`): after the model call at the predicted point, the same integral
    is redone through that new node too (Adams–Moulton, one order higher), without a new model
    call; the next step uses that call. No corrector after the last step (it would cost one).
    ``lower_order_final`` caps the order at the number of steps left; ``None`` (default) turns it
    on for grids of fewer than :data:`LOWER_ORDER_FINAL_BELOW` steps.
    With ``order=2`` this is the exact integral of the linear interpolant, DPM-Solver's "taylor"
    variant (:func:`sample_dpmpp_2m_taylor`); Lu et al.'s DPM-Solver++(2M) is :func:`sample_dpmpp_2m`.

    ``x``: ``(n, ...)`` at ``sigmas[0]``; ``sigmas``: ``(N + 1,)`` strictly decreasing, > 0.
    Returns ``(x at sigmas[-1], {'nfe', 'denoised'})`` with ``nfe = N``.
    """
    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    order = check_int("order", order, minimum=1)
    if order > 4:
        raise ValueError(f"order must be 1..4, got {order}")
    _check_callback(callback)
    c = _Coords(x, ref_mean, ref_std)
    n_steps = len(sig) - 1
    low_final = _auto_lower_order_final(lower_order_final, n_steps)
    ell = [math.log(c.tau(s)) for s in sig]
    pred, corr = _multistep_plan(ell, order, corrector, low_final)
    y = c.to_y(x, sig[0])
    denoised = model(x, sig[0])
    hist: list[torch.Tensor] = [c.residual(denoised, x, sig[0])]  # newest last
    for i in range(n_steps):
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig[i], "sigma_next": sig[i + 1], "denoised": denoised})
        w = pred[i]
        y_next = _combine(y, w, hist[::-1][: len(w)])
        x_next = c.to_x(y_next, sig[i + 1])
        if i < n_steps - 1:
            denoised = model(x_next, sig[i + 1])
            r_next = c.residual(denoised, x_next, sig[i + 1])
            if corrector:
                wc = corr[i]
                y_next = _combine(y, wc, ([r_next] + hist[::-1])[: len(wc)])
                x_next = c.to_x(y_next, sig[i + 1])
            hist = (hist + [r_next])[-order:]
        x, y = x_next, y_next
    return x, {"nfe": model.nfe, "denoised": denoised}


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                    ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0,
                    lower_order_final: bool | None = None,
                    callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""DPM-Solver++(2M) as Lu et al. (2022) define it (their Algorithm 2; k-diffusion's and
    diffusers' ``dpmpp_2m``), in the coordinates of equation :eq:`fast-coords` (equation :eq:`fast-2m`):

    .. math:: y_{i+1}=y_i+(\tau_{i+1}-\tau_i)\Big[R_i+\frac{R_i-R_{i-1}}{2r_i}\Big],\qquad
              r_i=\frac{h_{i-1}}{h_i},\quad h_i=\ell_{i+1}-\ell_i,

    i.e. the residual is frozen at its linear extrapolation to the *midpoint* of the step in
    :math:`\ell=\log\tau`. For ``ref_std = 0``, :math:`y=x/\sigma`, :math:`\tau=1/\sigma`, this is
    :math:`x_{i+1}=\tfrac{\sigma_{i+1}}{\sigma_i}x_i-(e^{-h_i}-1)\big[(1+\tfrac1{2r_i})\hat x_0^{(i)}-\tfrac1{2r_i}\hat x_0^{(i-1)}\big]`.
    The first step, and the last one when ``lower_order_final`` is on (default: grids of fewer than
    :data:`LOWER_ORDER_FINAL_BELOW` steps), are first order. The exact integral of the same linear
    interpolant is :func:`sample_dpmpp_2m_taylor`. One model call per step; arguments and return
    value as :func:`sample_multistep`."""
    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    _check_callback(callback)
    c = _Coords(x, ref_mean, ref_std)
    n_steps = len(sig) - 1
    low_final = _auto_lower_order_final(lower_order_final, n_steps)
    ell = [math.log(c.tau(s)) for s in sig]
    y = c.to_y(x, sig[0])
    r_old: torch.Tensor | None = None
    denoised = x
    for i in range(n_steps):
        denoised = model(x, sig[i])
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig[i], "sigma_next": sig[i + 1], "denoised": denoised})
        r = c.residual(denoised, x, sig[i])
        dtau = math.exp(ell[i + 1]) - math.exp(ell[i])
        if r_old is None or (low_final and i == n_steps - 1):
            y = y.add(r, alpha=dtau)
        else:
            half_over_r = 0.5 * (ell[i + 1] - ell[i]) / (ell[i] - ell[i - 1])  # 1 / (2 r_i)
            y = y.add(r, alpha=dtau * (1 + half_over_r)).add_(r_old, alpha=-dtau * half_over_r)
        x, r_old = c.to_x(y, sig[i + 1]), r
    return x, {"nfe": model.nfe, "denoised": denoised}


def sample_dpmpp_2m_taylor(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0,
                           lower_order_final: bool | None = None,
                           callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""The "taylor" variant of DPM-Solver-2M (DPM-Solver's ``solver_type='taylor'``):
    :func:`sample_multistep` with ``order=2``, the *exact* integral of the linear interpolant
    (equation :eq:`fast-multistep`),
    :math:`y_{i+1}=y_i+(\tau_{i+1}-\tau_i)R_i+\big(h_i\tau_{i+1}-\tau_{i+1}+\tau_i\big)\frac{R_i-R_{i-1}}{h_{i-1}}`.
    Same order as :func:`sample_dpmpp_2m`, but it extrapolates the line over the whole step instead
    of freezing it at the midpoint, and is usually less accurate on coarse grids."""
    return sample_multistep(denoiser, x, sigmas, order=2, ref_mean=ref_mean, ref_std=ref_std,
                            lower_order_final=lower_order_final, callback=callback)


def sample_dpmpp_3m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                    ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0,
                    lower_order_final: bool | None = None,
                    callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""DPM-Solver++(3M): :func:`sample_multistep` with ``order=3`` (equation :eq:`fast-multistep`)."""
    return sample_multistep(denoiser, x, sigmas, order=3, ref_mean=ref_mean, ref_std=ref_std,
                            lower_order_final=lower_order_final, callback=callback)


def sample_unipc(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, order: int = 3,
                 ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0,
                 lower_order_final: bool | None = None,
                 callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""Multistep predictor of order ``order`` plus the UniPC-style corrector (equation :eq:`fast-corrector`),
    order ``order + 1`` at one model call per step: :func:`sample_multistep` with ``corrector=True``."""
    return sample_multistep(denoiser, x, sigmas, order=order, corrector=True, ref_mean=ref_mean,
                            ref_std=ref_std, lower_order_final=lower_order_final, callback=callback)


@torch.no_grad()
def sample_lms(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, order: int = 4,
               callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""Linear multistep (Adams–Bashforth) in :math:`\sigma` on :math:`d=(x-\hat x_0)/\sigma`
    (equation :eq:`fast-lms`): :math:`x_{i+1}=x_i+\sum_j d_{i-j}\int_{\sigma_i}^{\sigma_{i+1}}L_j(\sigma)\,d\sigma`,
    the Lagrange polynomials through the last ``order`` noise levels (k-diffusion's
    ``sample_lms``; weights by exact quadrature instead of an adaptive one). One model call per
    step; same arguments and return value as :func:`sample_multistep`."""
    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    order = check_int("order", order, minimum=1)
    if order > 4:
        raise ValueError(f"order must be 1..4, got {order}")
    _check_callback(callback)
    ds: list[torch.Tensor] = []
    denoised = x
    for i in range(len(sig) - 1):
        denoised = model(x, sig[i])
        ds = (ds + [(x - denoised) / sig[i]])[-order:]
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig[i], "sigma_next": sig[i + 1], "denoised": denoised})
        k = len(ds)
        w = _weights(sig[i - k + 1 : i + 1][::-1], sig[i], sig[i + 1], False)
        x = x + sum(wj * ds[-1 - j] for j, wj in enumerate(w))
    return x, {"nfe": model.nfe, "denoised": denoised}


# ============================================================================ adaptive
@torch.no_grad()
def sample_dpm_adaptive(denoiser: Denoiser, x: torch.Tensor, sigma_max: float, sigma_min: float, *,
                        rtol: float = 0.05, atol: float = 0.0078, method: str = "multistep",
                        ref_mean: float | torch.Tensor = 0.0, ref_std: float = 0.0, h_init: float = 0.05,
                        safety: float = 0.9, max_steps: int = 10_000) -> tuple[torch.Tensor, dict]:
    r"""Second-order exponential integrator with error control (equation :eq:`fast-adaptive`), in the
    coordinates of equation :eq:`fast-coords`, with steps :math:`h` in :math:`\ell=\log\tau`.

    ``method='singlestep'``: DPM-Solver-2 with an embedded first-order step (DPM-Solver-12).
    From :math:`(\ell,y)` with :math:`R_0`, a model call at the midpoint
    :math:`\ell+h/2` gives :math:`R_{1/2}`; the second-order value interpolates
    :math:`R` linearly through both nodes, the first-order one keeps :math:`R_0`. Two model
    calls per step.

    ``method='multistep'``: the predictor is the exponential Adams–Bashforth step of order 2
    through the last two accepted nodes, the corrector the Adams–Moulton step through the new
    node too (order 3); their difference estimates the predictor's error (Milne's device) and
    the corrected value is kept. One model call per step, rejected steps included.

    The error is k-diffusion's norm,
    :math:`\|(x_{\rm low}-x_{\rm high})/\max(\mathrm{atol},\mathrm{rtol}\max(|x_{\rm low}|,|x_{\rm prev}|))\|_{\rm RMS}`
    over the whole batch (one step size for all samples); a step is accepted when it is
    :math:`\le1`, and :math:`h\leftarrow h\cdot\min(g,\max(0.2,\ \mathrm{safety}\cdot\mathrm{err}^{-1/2}))`
    with :math:`g=5`; for the multistep pair the exponent is :math:`-1/3` and :math:`g=1.5`: a
    multistep formula and its error estimate are only reliable for moderate step ratios (with
    :math:`g=5`, at rtol 0.1-0.2, steps with a final error of 0.7-0.9 were accepted on the laboratory).

    ``x``: ``(n, ...)`` at ``sigma_max``. Returns ``(x at sigma_min, {'nfe', 'steps', 'rejected'})``.
    """
    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    h = check_positive("h_init", h_init)
    safety = check_positive("safety", safety)
    if safety > 1:
        raise ValueError(f"safety must be in (0, 1] (a step-size controller never trusts more than its error estimate), got {safety}")
    max_steps = check_int("max_steps", max_steps, minimum=1)
    if method not in ("singlestep", "multistep"):
        raise ValueError(f"method must be 'singlestep' or 'multistep', got {method!r}")
    if x.shape[0] == 0:  # an empty batch: no error to control, an empty result
        return x.clone(), {"nfe": 0, "steps": 0, "rejected": 0}
    c = _Coords(x, ref_mean, ref_std)
    ell, ell_end = math.log(c.tau(sigma_max)), math.log(c.tau(sigma_min))
    sigma = sigma_max
    y = c.to_y(x, sigma)
    r0 = c.residual(model(x, sigma), x, sigma)
    hist = [(ell, r0)]  # accepted (node, residual) pairs, for the multistep pair
    x_prev = x
    steps = rejected = 0
    expo = -1 / 2 if method == "singlestep" else -1 / 3
    grow = 5.0 if method == "singlestep" else _MS_GROW

    def err_norm(lo: torch.Tensor, hi: torch.Tensor) -> float:
        scale = torch.clamp(rtol * torch.maximum(lo.abs(), x_prev.abs()), min=atol)
        return float(((lo - hi) / scale).pow(2).mean().sqrt())

    while ell_end - ell > 1e-12:
        if steps + rejected >= max_steps:
            raise RuntimeError(f"sample_dpm_adaptive: max_steps={max_steps} reached; loosen rtol/atol")
        h = min(h, ell_end - ell)
        ell_n = ell_end if ell_end - (ell + h) < 1e-12 else ell + h
        sig_n = sigma_min if ell_n == ell_end else c.sigma(math.exp(ell_n))
        if method == "singlestep":
            ell_m = ell + 0.5 * (ell_n - ell)
            sig_m = c.sigma(math.exp(ell_m))
            y_m = y + (math.exp(ell_m) - math.exp(ell)) * r0
            x_m = c.to_x(y_m, sig_m)
            r_m = c.residual(model(x_m, sig_m), x_m, sig_m)
            y_lo = y + (math.exp(ell_n) - math.exp(ell)) * r0
            w = _weights([ell, ell_m], ell, ell_n, True)
            y_hi = y + w[0] * r0 + w[1] * r_m
            x_lo, x_hi = c.to_x(y_lo, sig_n), c.to_x(y_hi, sig_n)
        else:
            nodes = [p for p, _ in hist[-2:]][::-1]
            w = _weights(nodes, ell, ell_n, True)
            y_lo = y + sum(wj * hist[-1 - j][1] for j, wj in enumerate(w))
            x_lo = c.to_x(y_lo, sig_n)
            r_n = c.residual(model(x_lo, sig_n), x_lo, sig_n)
            wc = _weights([ell_n] + nodes, ell, ell_n, True)
            y_hi = y + wc[0] * r_n + sum(wj * hist[-1 - j][1] for j, wj in enumerate(wc[1:]))
            x_hi = c.to_x(y_hi, sig_n)
        err = err_norm(x_lo, x_hi)
        if err <= 1.0:
            x_prev, x, y, ell, sigma = x_lo, x_hi, y_hi, ell_n, sig_n
            steps += 1
            if method == "singlestep":
                if ell_end - ell > 1e-12:
                    r0 = c.residual(model(x, sigma), x, sigma)
            else:
                hist = (hist + [(ell, r_n)])[-2:]
        else:
            rejected += 1
        h *= min(grow, max(0.2, safety * (err + 1e-16) ** expo))
    return x, {"nfe": model.nfe, "steps": steps, "rejected": rejected}


# ============================================================================ stochastic
def _ancestral_step(s: float, s_next: float, eta: float) -> tuple[float, float]:
    r""":math:`(\sigma_{\rm down},\sigma_{\rm up})` with :math:`\sigma_{\rm down}^2+\sigma_{\rm up}^2=\sigma_{i+1}^2`
    and :math:`\sigma_{\rm up}=\eta\,\sigma_{i+1}\sqrt{1-\sigma_{i+1}^2/\sigma_i^2}` (the DDPM posterior's
    noise for :math:`\eta=1`, equation :eq:`fast-ancestral`)."""
    up = min(s_next, eta * math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0)))
    return math.sqrt(s_next**2 - up**2), up


def _noise(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)


def _check_stochastic(x, sigmas, generator, callback, **scalars):
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    g = make_generator(generator, x.device, name="generator")  # on x's device: noise never crosses devices
    _check_callback(callback)
    vals = {k: check_positive(k, v, allow_zero=True) for k, v in scalars.items()}
    return x, sig, g, vals


@torch.no_grad()
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           generator: torch.Generator | int, eta: float = 1.0, s_noise: float = 1.0,
                           callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""Euler-ancestral (equation :eq:`fast-ancestral`): a deterministic Euler step down to
    :math:`\sigma_{\rm down}`, then fresh noise of std :math:`\sigma_{\rm up}` back up to
    :math:`\sigma_{i+1}`. With the exact denoiser and :math:`\eta=1` each step is DDPM's ancestral
    step with the Bayes posterior mean. One model call per step; ``eta = 0`` is Euler.
    ``x``: ``(n, ...)`` at ``sigmas[0]``. Returns ``(x, {'nfe', 'denoised'})``."""
    model = _Counted(denoiser)
    x, sig, g, v = _check_stochastic(x, sigmas, generator, callback, eta=eta, s_noise=s_noise)
    denoised = x
    for i in range(len(sig) - 1):
        denoised = model(x, sig[i])
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig[i], "sigma_next": sig[i + 1], "denoised": denoised})
        down, up = _ancestral_step(sig[i], sig[i + 1], v["eta"])
        x = denoised + (down / sig[i]) * (x - denoised)
        if up > 0:
            x = x + v["s_noise"] * up * _noise(x, g)
    return x, {"nfe": model.nfe, "denoised": denoised}


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        generator: torch.Generator | int, eta: float = 1.0, s_noise: float = 1.0,
                        lower_order_final: bool | None = None,
                        callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""DPM-Solver++(2M) SDE (equation :eq:`fast-2m-sde`), the exponential integrator of the reverse SDE
    family with noise :math:`\eta`. With :math:`h=\log(\sigma_i/\sigma_{i+1})`:

    .. math:: x_{i+1}=\tfrac{\sigma_{i+1}}{\sigma_i}e^{-\eta h}x_i+(1-e^{-(1+\eta)h})\hat x_0^{(i)}
              +\tfrac{1-e^{-(1+\eta)h}}{2r}(\hat x_0^{(i)}-\hat x_0^{(i-1)})
              +\sigma_{i+1}\sqrt{1-e^{-2\eta h}}\,\xi,

    with :math:`r=h_{i-1}/h_i` (midpoint variant; no correction at the first step, nor at the last
    one when ``lower_order_final`` is on, as in :func:`sample_dpmpp_2m`). ``eta = 0`` is
    :func:`sample_dpmpp_2m` exactly. One model call per step. Returns ``(x, {'nfe', 'denoised'})``."""
    model = _Counted(denoiser)
    x, sig, g, v = _check_stochastic(x, sigmas, generator, callback, eta=eta, s_noise=s_noise)
    n_steps = len(sig) - 1
    low_final = _auto_lower_order_final(lower_order_final, n_steps)
    old, h_last = None, math.nan  # h_last is read from the second step on
    denoised = x
    for i in range(n_steps):
        denoised = model(x, sig[i])
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sig[i], "sigma_next": sig[i + 1], "denoised": denoised})
        h = math.log(sig[i] / sig[i + 1])
        eta_h = v["eta"] * h
        a = -math.expm1(-h - eta_h)
        x = (sig[i + 1] / sig[i]) * math.exp(-eta_h) * x + a * denoised
        if old is not None and not (low_final and i == n_steps - 1):
            r = h_last / h
            x = x + (0.5 * a / r) * (denoised - old)
        if eta_h > 0:
            x = x + v["s_noise"] * sig[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)) * _noise(x, g)
        old, h_last = denoised, h
    return x, {"nfe": model.nfe, "denoised": denoised}


@torch.no_grad()
def sample_heun_churn(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                      generator: torch.Generator | int | None = None, s_churn: float = 0.0,
                      s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
                      callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
    r"""Karras et al.'s stochastic Heun sampler (their Algorithm 2, equation :eq:`fast-churn`): for
    :math:`\sigma_i\in[s_{\rm tmin},s_{\rm tmax}]` raise the noise to
    :math:`\hat\sigma=\sigma_i(1+\gamma)`, :math:`\gamma=\min(s_{\rm churn}/N,\sqrt2-1)`, by adding
    :math:`\sqrt{\hat\sigma^2-\sigma_i^2}\,\xi`, then take a Heun step of equation :eq:`ode-sigma` from
    :math:`\hat\sigma` to :math:`\sigma_{i+1}`. ``s_churn = 0`` is deterministic Heun
    (:func:`companion.diffusion.ode.sample_heun`) and needs no ``generator``. Two model calls per step.
    Returns ``(x, {'nfe', 'denoised'})``."""
    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sig = _check_sigmas(sigmas)
    _check_callback(callback)
    s_churn = check_positive("s_churn", s_churn, allow_zero=True)
    s_noise = check_positive("s_noise", s_noise, allow_zero=True)
    s_tmin = check_positive("s_tmin", s_tmin, allow_zero=True)
    if isinstance(s_tmax, bool) or not isinstance(s_tmax, (int, float)):
        raise TypeError(f"s_tmax must be a real number (math.inf allowed), got {type(s_tmax).__name__}")
    if math.isnan(s_tmax) or s_tmax < s_tmin:
        raise ValueError(f"s_tmax must be >= s_tmin ({s_tmin}), got {s_tmax}")
    g = make_generator(generator, x.device, name="generator") if s_churn > 0 else None
    n_steps = len(sig) - 1
    denoised = x
    for i in range(n_steps):
        s, s_next = sig[i], sig[i + 1]
        gamma = min(s_churn / n_steps, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + s_noise * math.sqrt(s_hat**2 - s**2) * _noise(x, g)
        denoised = model(x, s_hat)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s_hat, "sigma_next": s_next, "denoised": denoised})
        d = (x - denoised) / s_hat
        x_e = x + (s_next - s_hat) * d
        d2 = (x_e - model(x_e, s_next)) / s_next
        x = x + (s_next - s_hat) * 0.5 * (d + d2)
    return x, {"nfe": model.nfe, "denoised": denoised}


# ============================================================================ reference and grids
def reference_solution(denoiser: Denoiser, x: torch.Tensor, sigma_max: float, sigma_min: float, *,
                       rtol: float = 1e-12, atol: float = 1e-12) -> tuple[torch.Tensor, dict]:
    r"""Reference solution of equation :eq:`ode-sigma` by SciPy's DOP853 (order 8) in :math:`u=\log\sigma`,
    where :math:`dx/du=x-\hat x_0(x,e^u)`, the whole batch as one system. Independent of the
    coordinates used by the fast samplers. ``x``: ``(n, ...)``; float64 recommended.
    Returns ``(x at sigma_min, {'nfe'})``."""
    from scipy.integrate import solve_ivp

    model = _Counted(denoiser)
    x = check_batch("x", x, min_ndim=2, allow_empty=True)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    shape, dtype = x.shape, x.dtype

    def fun(u, yflat):
        xx = torch.from_numpy(yflat).reshape(shape).to(dtype)
        return (xx - model(xx, math.exp(u))).reshape(-1).double().numpy()

    sol = solve_ivp(fun, (math.log(sigma_max), math.log(sigma_min)), x.detach().double().reshape(-1).numpy(),
                    method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference_solution: DOP853 failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape).to(dtype), {"nfe": model.nfe}


def pathwise_error(x: torch.Tensor, x_ref: torch.Tensor) -> float:
    r"""Mean Euclidean distance :math:`\frac1n\sum_i\|x_i-x^{\rm ref}_i\|` between two batches
    ``(n, ...)`` started from the same :math:`x_T`."""
    x = check_batch("x", x, min_ndim=2)
    x_ref = check_batch("x_ref", x_ref, min_ndim=2)
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    return float((x - x_ref).flatten(1).norm(dim=1).mean())


def warped_grid(params, n: int, sigma_min: float = 2e-3, sigma_max: float = 80.0,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""A decreasing grid of ``n + 1`` noise levels from a step density (equation :eq:`fast-grid`).

    ``params`` (``K >= 2`` numbers) are the log step density :math:`a(t)` at ``K`` equally spaced
    knots of :math:`t\in[0,1]`, linear in between; the grid is
    :math:`\log\sigma_i=\log\sigma_{\max}+(\log\sigma_{\min}-\log\sigma_{\max})\,G(i/n)`,
    :math:`G(t)=\int_0^te^{a}/\int_0^1e^{a}`, ``1 <= n <= MAX_STEPS``. All zeros give a grid uniform in
    :math:`\log\sigma`; :func:`karras_warp` gives the Karras grid's density. Returns ``(n + 1,)``."""
    if isinstance(params, (str, bytes)) or params is None:
        raise TypeError(f"params must be a sequence of numbers, got {type(params).__name__}")
    a = np.asarray(params, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or not np.isfinite(a).all():
        raise ValueError(f"params must be at least 2 finite numbers, got {params!r}")
    n = check_int("n", n, minimum=1, maximum=MAX_STEPS)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    tt = np.linspace(0.0, 1.0, 4001)
    dens = np.exp(np.interp(tt, np.linspace(0.0, 1.0, a.size), a - a.max()))
    G = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(tt))])
    G /= G[-1]
    u = math.log(sigma_max) + (math.log(sigma_min) - math.log(sigma_max)) * np.interp(np.linspace(0, 1, n + 1), tt, G)
    s = torch.from_numpy(np.exp(u))
    s[0], s[-1] = sigma_max, sigma_min
    return s.to(dtype)


def karras_warp(k: int, sigma_min: float = 2e-3, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
    r"""Log step density of Karras et al.'s grid (:func:`companion.diffusion.ode.sigma_grid`) at ``k`` knots,
    for :func:`warped_grid`: :math:`a(t)=\log|d\log\sigma/dt|=\log\rho|B|-\log(A+Bt)`."""
    k = check_int("k", k, minimum=2, maximum=MAX_STEPS)
    sigma_max, sigma_min = _check_sigma_range(sigma_max, sigma_min)
    rho = check_positive("rho", rho)
    A = sigma_max ** (1 / rho)
    B = sigma_min ** (1 / rho) - A
    t = np.linspace(0.0, 1.0, k)
    return np.log(rho * abs(B)) - np.log(A + B * t)


def optimize_grid(sampler: Callable, denoiser: Denoiser, x_T: torch.Tensor, x_ref: torch.Tensor, n: int, *,
                  sigma_min: float = 2e-3, sigma_max: float = 80.0, knots: int = 8,
                  init: np.ndarray | None = None, maxiter: int = 600) -> tuple[torch.Tensor, dict]:
    r"""A grid of ``n`` steps that minimises the pathwise error of ``sampler`` (equation :eq:`fast-grid`).

    With an exact denoiser the error of a grid is computable: :func:`pathwise_error` of
    ``sampler(denoiser, x_T, grid)`` against ``x_ref`` (the ODE's exact end points of the
    *training* starts ``x_T``). The log step density of :func:`warped_grid` at ``knots`` knots
    is optimised by Nelder–Mead from Karras et al.'s (``init``). Evaluate the result on other
    starts than ``x_T``. Returns ``(grid (n + 1,), {'error', 'error_init', 'params', 'evals'})``.
    """
    from scipy.optimize import minimize

    if not callable(sampler):
        raise TypeError(f"sampler must be callable, got {type(sampler).__name__}")
    knots = check_int("knots", knots, minimum=2)
    p0 = karras_warp(knots, sigma_min, sigma_max) if init is None else np.asarray(init, dtype=np.float64)

    def loss(p):
        grid = warped_grid(p, n, sigma_min, sigma_max, x_T.dtype)
        if not (grid[1:] < grid[:-1]).all():
            return math.inf
        y, _ = sampler(denoiser, x_T, grid)
        e = pathwise_error(y, x_ref)
        return e if math.isfinite(e) else math.inf

    e0 = loss(p0)
    res = minimize(loss, p0, method="Nelder-Mead",
                   options={"maxiter": maxiter, "xatol": 1e-3, "fatol": 1e-7 * max(e0, 1e-12), "adaptive": True})
    best = res.x if res.fun <= e0 else p0
    return warped_grid(best, n, sigma_min, sigma_max, x_T.dtype), {
        "error": float(min(res.fun, e0)), "error_init": float(e0), "params": [float(v) for v in best],
        "evals": int(res.nfev)}


@dataclass(frozen=True)
class SamplerInfo:
    """One entry of :data:`SAMPLERS`: ``fn(denoiser, x, sigmas, **kwargs) -> (x, info)``, its order
    (the log-log slope of its pathwise error; weak order 1 for the stochastic ones), how many model
    calls one step makes, whether it draws noise (then it takes ``generator``) and whether it takes
    ``lower_order_final`` (the multistep ones). Calling the entry runs the sampler with its fixed
    arguments."""

    fn: Callable[..., tuple[torch.Tensor, dict]]
    order: int
    calls_per_step: int = 1
    stochastic: bool = False
    multistep: bool = False
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 generator: torch.Generator | int | None = None, lower_order_final: bool | None = None,
                 callback: Callable[[dict], None] | None = None) -> tuple[torch.Tensor, dict]:
        kw: dict[str, Any] = dict(self.kwargs)
        if self.stochastic or "eta" in kw:
            kw["generator"] = generator
        if self.multistep and lower_order_final is not None:
            kw["lower_order_final"] = lower_order_final
        return self.fn(denoiser, x, sigmas, callback=callback, **kw)


#: Every σ-sampler of the book by name, the one registry (denoiser interface). The score-based
#: Euler/Heun/RK4 loops of chapter 3 (:data:`companion.diffusion.ode.SOLVERS`) are that chapter's
#: derivation; here Euler and Heun are the denoiser versions.
SAMPLERS: dict[str, SamplerInfo] = {
    "Euler": SamplerInfo(sample_euler_ancestral, 1, kwargs=(("eta", 0.0),)),
    "Heun": SamplerInfo(sample_heun_churn, 2, calls_per_step=2),
    "DPM-Solver++(2M)": SamplerInfo(sample_dpmpp_2m, 2, multistep=True),
    "DPM-Solver-2M (taylor)": SamplerInfo(sample_dpmpp_2m_taylor, 2, multistep=True),
    "DPM-Solver++(3M)": SamplerInfo(sample_dpmpp_3m, 3, multistep=True),
    "UniPC-3": SamplerInfo(sample_unipc, 4, multistep=True),
    "LMS-4": SamplerInfo(sample_lms, 4, multistep=True),
    "Euler ancestral": SamplerInfo(sample_euler_ancestral, 1, stochastic=True),
    "DPM-Solver++(2M) SDE": SamplerInfo(sample_dpmpp_2m_sde, 1, stochastic=True, multistep=True),
}

#: The deterministic multistep samplers of :data:`SAMPLERS` and their order (a view of it).
FAST_SAMPLERS: dict[str, tuple[Callable, int]] = {
    name: (info.fn, info.order) for name, info in SAMPLERS.items() if info.multistep and not info.stochastic}
