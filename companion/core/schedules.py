r"""Noise schedules in the book's notation, with converters to Ho et al. and Song et al.

**The book's notation** (chapter 0, equation ``notation``) works with *standard deviations*:

* :math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon` — :math:`\bar\alpha_t` is the signal
  coefficient and :math:`\bar\beta_t` the noise standard deviation of :math:`p(x_t\mid x_0)`;
* per step :math:`x_t=\alpha_t x_{t-1}+\beta_t\varepsilon_t` with :math:`\alpha_t^2+\beta_t^2=1`
  in the variance-preserving case, so :math:`\bar\alpha_t=\prod_{i\le t}\alpha_i` and
  :math:`\bar\beta_t^2=1-\bar\alpha_t^2`.

Ho et al. use *variances* under the same letters: :math:`\beta^{\rm Ho}_t=\beta_t^2`,
:math:`\alpha^{\rm Ho}_t=\alpha_t^2`, :math:`\bar\alpha^{\rm Ho}_t=\bar\alpha_t^2`. Song et al.'s
VP SDE has :math:`\beta(t)=g_t^2`, and the VE / EDM noise level is
:math:`\sigma_t=\bar\beta_t/\bar\alpha_t` with EDM's scale :math:`s(t)=\bar\alpha_t`.

A linear SDE :math:`dx=f_tx\,dt+g_t\,dw` has :math:`p(x_t\mid x_0)=\mathcal N(\bar\alpha_tx_0,\bar\beta_t^2I)`
iff (equation :eq:`lab-fg`, chapter 2)

.. math:: f_t=\frac{d\ln\bar\alpha_t}{dt},\qquad g_t^2=\bar\alpha_t^2\frac{d}{dt}\Big(\frac{\bar\beta_t^2}{\bar\alpha_t^2}\Big)=\frac{d\bar\beta_t^2}{dt}-2f_t\bar\beta_t^2 .
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .utils import MAX_STEPS, check_int, check_positive, check_tensor

__all__ = [
    "DiscreteSchedule",
    "ContinuousSchedule",
    "VPSchedule",
    "VESchedule",
    "su_vp",
    "NOTATION",
]


# ====================================================================== discrete schedules
class DiscreteSchedule:
    r"""A discrete variance-preserving schedule :math:`\bar\alpha_0=1>\bar\alpha_1>\dots>\bar\alpha_T`.

    All per-step quantities are *derived from the barred ones*, so a subsequence
    (:meth:`subsequence`) automatically uses :math:`\alpha_{\tau_i}=\bar\alpha_{\tau_i}/\bar\alpha_{\tau_{i-1}}`
    — plugging the original per-step :math:`\alpha_{\tau_i}` (a classic bug) is impossible.

    Args:
        alpha_bar: ``(T+1,)`` signal coefficients, ``alpha_bar[0] == 1``, strictly decreasing,
            all in ``(0, 1]``.
        timesteps: ``(T+1,)`` integer time labels fed to a network (default ``0..T``). On a
            subsequence they are the original indices.
    """

    def __init__(self, alpha_bar: torch.Tensor, timesteps: torch.Tensor | None = None):
        alpha_bar = check_tensor("alpha_bar", torch.as_tensor(alpha_bar, dtype=torch.float64), ndim=1)
        alpha_bar = alpha_bar.to(torch.float64)
        if alpha_bar.numel() < 2:
            raise ValueError("alpha_bar must have at least 2 entries (t = 0 and t = 1)")
        if abs(alpha_bar[0].item() - 1.0) > 1e-12:
            raise ValueError(f"alpha_bar[0] must be 1 (clean data at t = 0), got {alpha_bar[0].item()}")
        if (alpha_bar <= 0).any() or (alpha_bar > 1).any():
            raise ValueError("alpha_bar must lie in (0, 1]")
        if not (alpha_bar[1:] < alpha_bar[:-1]).all():
            raise ValueError("alpha_bar must be strictly decreasing")
        if timesteps is None:
            timesteps = torch.arange(alpha_bar.numel())
        timesteps = torch.as_tensor(timesteps)
        if timesteps.shape != alpha_bar.shape:
            raise ValueError(f"timesteps must have shape {tuple(alpha_bar.shape)}, got {tuple(timesteps.shape)}")
        self.alpha_bar = alpha_bar
        self.timesteps = timesteps.to(torch.long)

    # ---- barred quantities
    @property
    def T(self) -> int:
        """Number of steps."""
        return self.alpha_bar.numel() - 1

    @property
    def beta_bar(self) -> torch.Tensor:
        r""":math:`\bar\beta_t=\sqrt{1-\bar\alpha_t^2}`, shape ``(T+1,)``."""
        return torch.sqrt(1 - self.alpha_bar**2)

    @property
    def alpha(self) -> torch.Tensor:
        r"""Per-step :math:`\alpha_t=\bar\alpha_t/\bar\alpha_{t-1}` (``alpha[0] = 1``), ``(T+1,)``."""
        a = torch.ones_like(self.alpha_bar)
        a[1:] = self.alpha_bar[1:] / self.alpha_bar[:-1]
        return a

    @property
    def beta(self) -> torch.Tensor:
        r"""Per-step noise std :math:`\beta_t=\sqrt{1-\alpha_t^2}`, ``(T+1,)``."""
        return torch.sqrt(1 - self.alpha**2)

    @property
    def sigma(self) -> torch.Tensor:
        r"""VE/EDM noise level :math:`\sigma_t=\bar\beta_t/\bar\alpha_t`, ``(T+1,)``."""
        return self.beta_bar / self.alpha_bar

    def posterior_std(self) -> torch.Tensor:
        r"""Std of :math:`p(x_{t-1}\mid x_t,x_0)`: :math:`\bar\beta_{t-1}\beta_t/\bar\beta_t`
        (``[0] = 0``), ``(T+1,)``. Ho et al.'s :math:`\sqrt{\tilde\beta_t}`."""
        s = torch.zeros_like(self.alpha_bar)
        bb = self.beta_bar
        s[1:] = bb[:-1] * self.beta[1:] / bb[1:]
        return s

    def check_step(self, t: int) -> int:
        """Validate a step index ``1 <= t <= T`` and return it."""
        t = check_int("t", t)
        if not 1 <= t <= self.T:
            raise ValueError(f"t must be a step index in [1, {self.T}], got {t}")
        return t

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"DiscreteSchedule(T={self.T}, alpha_bar_T={self.alpha_bar[-1].item():.4g})"

    # ---- subsequences
    def subsequence(self, steps: int, spacing: str = "uniform") -> DiscreteSchedule:
        r"""The schedule restricted to ``steps`` indices :math:`0=\tau_0<\tau_1<\dots<\tau_S=T`.

        ``spacing='uniform'`` (DDIM's linear stride, rounded) or ``'quadratic'``.
        The result's per-step :math:`\alpha` are ratios of barred quantities on the
        subsequence (equation :eq:`ddpm-skip`), and its ``timesteps`` keep the original labels.
        """
        steps = check_int("steps", steps, minimum=1)
        if steps > self.T:
            raise ValueError(f"steps must be <= T = {self.T}, got {steps}")
        if spacing == "uniform":
            idx = torch.linspace(0, self.T, steps + 1, dtype=torch.float64).round().long()
        elif spacing == "quadratic":
            idx = (torch.linspace(0, math.sqrt(self.T), steps + 1, dtype=torch.float64) ** 2).round().long()
            idx = torch.unique(idx)
            if idx.numel() != steps + 1:  # quadratic spacing collides at small indices
                idx = torch.linspace(0, self.T, steps + 1, dtype=torch.float64).round().long()
        else:
            raise ValueError(f"spacing must be 'uniform' or 'quadratic', got {spacing!r}")
        return DiscreteSchedule(self.alpha_bar[idx], self.timesteps[idx])

    # ---- constructors and converters
    @classmethod
    def from_ho(cls, betas: torch.Tensor) -> DiscreteSchedule:
        r"""From Ho et al.'s per-step *variances* :math:`\beta^{\rm Ho}_{1..T}`, shape ``(T,)``."""
        if isinstance(betas, torch.Tensor):
            check_tensor("betas", betas, ndim=1)
        betas = check_tensor("betas", torch.as_tensor(betas, dtype=torch.float64), ndim=1).to(torch.float64)
        if ((betas <= 0) | (betas >= 1)).any():
            raise ValueError("betas (Ho's per-step variances) must lie in (0, 1)")
        ab2 = torch.cumprod(1 - betas, 0)
        return cls(torch.cat([torch.ones(1, dtype=torch.float64), ab2.sqrt()]))

    def to_ho(self) -> dict[str, torch.Tensor]:
        r"""Ho et al.'s arrays for steps 1..T (each ``(T,)``): ``betas`` (:math:`\beta_t^2`),
        ``alphas`` (:math:`\alpha_t^2`), ``alphas_cumprod`` (:math:`\bar\alpha_t^2`) and
        ``posterior_variance`` (:math:`\tilde\beta_t`)."""
        return {
            "betas": self.beta[1:] ** 2,
            "alphas": self.alpha[1:] ** 2,
            "alphas_cumprod": self.alpha_bar[1:] ** 2,
            "posterior_variance": self.posterior_std()[1:] ** 2,
        }

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
        """Ho et al.'s linear schedule: variances ``linspace(beta_start, beta_end, T)``."""
        T = check_int("T", T, minimum=1, maximum=MAX_STEPS)
        check_positive("beta_start", beta_start)
        check_positive("beta_end", beta_end)
        return cls.from_ho(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def su(cls, T: int = 1000) -> DiscreteSchedule:
        r"""Su's schedule :math:`\alpha_t=\sqrt{1-0.02\,t/T}`, i.e. :math:`\beta^{\rm Ho}_t=0.02\,t/T`."""
        T = check_int("T", T, minimum=1, maximum=MAX_STEPS)
        t = torch.arange(1, T + 1, dtype=torch.float64)
        return cls.from_ho(0.02 * t / T)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> DiscreteSchedule:
        r"""Nichol & Dhariwal's cosine schedule, :math:`\bar\alpha_t^2\propto\cos^2\!\big(\frac{t/T+s}{1+s}\frac\pi2\big)`,
        with per-step variances clipped at ``max_beta``."""
        T = check_int("T", T, minimum=1, maximum=MAX_STEPS)
        s = check_positive("s", s)
        max_beta = check_positive("max_beta", max_beta)
        if max_beta >= 1:
            raise ValueError(f"max_beta must be < 1, got {max_beta}")
        t = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        ab2 = f / f[0]
        betas = (1 - ab2[1:] / ab2[:-1]).clamp(max=max_beta)
        return cls.from_ho(betas)


# ==================================================================== continuous schedules
def _as_time(t, t_min: float, t_max: float) -> torch.Tensor:
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.tensor(float(t), dtype=torch.float64)
    t = check_tensor("t", t)
    if t.numel() == 0:
        raise ValueError("t must hold at least one time, got an empty tensor")
    lo, hi = t.min().item(), t.max().item()
    if lo < t_min - 1e-12 or hi > t_max + 1e-12:
        raise ValueError(f"t must lie in [{t_min}, {t_max}], got values in [{lo:.6g}, {hi:.6g}]")
    return t


class ContinuousSchedule:
    r"""A continuous schedule given by :math:`\bar\alpha(t)` and :math:`\bar\beta(t)` on ``[t_min, t_max]``.

    Any pair of smooth torch functions defines one; :meth:`f` and :meth:`g2` then follow from
    equation :eq:`lab-fg` by automatic differentiation. Subclasses override them with closed forms
    (the tests check both against finite differences).

    Args:
        alpha_bar_fn, beta_bar_fn: maps from a float64 tensor ``t`` (any shape) to a tensor of
            the same shape.
        t_min, t_max: the time interval.
    """

    def __init__(
        self,
        alpha_bar_fn: Callable[[torch.Tensor], torch.Tensor],
        beta_bar_fn: Callable[[torch.Tensor], torch.Tensor],
        t_min: float = 0.0,
        t_max: float = 1.0,
        name: str = "custom",
    ):
        if not callable(alpha_bar_fn) or not callable(beta_bar_fn):
            raise TypeError("alpha_bar_fn and beta_bar_fn must be callables t -> tensor")
        if not t_max > t_min:
            raise ValueError(f"t_max must be > t_min, got [{t_min}, {t_max}]")
        self._ab, self._bb = alpha_bar_fn, beta_bar_fn
        self.t_min, self.t_max, self.name = float(t_min), float(t_max), name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, t in [{self.t_min}, {self.t_max}])"

    def alpha_bar(self, t) -> torch.Tensor:
        r""":math:`\bar\alpha(t)`, same shape as ``t``."""
        return self._ab(_as_time(t, self.t_min, self.t_max))

    def beta_bar(self, t) -> torch.Tensor:
        r""":math:`\bar\beta(t)`, same shape as ``t``."""
        return self._bb(_as_time(t, self.t_min, self.t_max))

    def sigma(self, t) -> torch.Tensor:
        r"""VE / EDM noise level :math:`\sigma(t)=\bar\beta(t)/\bar\alpha(t)`."""
        return self.beta_bar(t) / self.alpha_bar(t)

    def edm(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Karras et al.'s ``(s(t), sigma(t)) = (alpha_bar, beta_bar / alpha_bar)``."""
        return self.alpha_bar(t), self.sigma(t)

    def _grad(self, fn, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_time(t, self.t_min, self.t_max).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = fn(t)
            if not y.requires_grad:  # a constant, e.g. alpha_bar = 1 for VE
                return y.detach(), torch.zeros_like(t)
            (dy,) = torch.autograd.grad(y.sum(), t)
        return y.detach(), dy

    def f(self, t) -> torch.Tensor:
        r"""Drift coefficient :math:`f_t=\frac{d}{dt}\ln\bar\alpha_t` (equation :eq:`lab-fg`)."""
        a, da = self._grad(self._ab, t)
        return da / a

    def g2(self, t) -> torch.Tensor:
        r"""Squared diffusion :math:`g_t^2=\frac{d\bar\beta_t^2}{dt}-2f_t\bar\beta_t^2` (equation :eq:`lab-fg`).

        Where :math:`\bar\beta_t=0` (e.g. :math:`t=0` of a VP schedule written with a square
        root) autograd of :math:`\bar\beta` gives :math:`0\cdot\infty`; there the right-hand
        limit (the value at ``t + 1e-7``) is returned instead.
        """
        t = _as_time(t, self.t_min, self.t_max)
        b, db = self._grad(self._bb, t)
        out = 2 * b * db - 2 * self.f(t) * b**2
        bad = ~torch.isfinite(out)
        if bad.any():
            tr = (t + 1e-7).clamp(max=self.t_max)
            b2, db2 = self._grad(self._bb, tr)
            out = torch.where(bad, 2 * b2 * db2 - 2 * self.f(tr) * b2**2, out)
        return out

    def song_beta(self, t) -> torch.Tensor:
        r"""Song et al.'s VP :math:`\beta(t)`; equals :math:`g_t^2` (and :math:`-2f_t`) for a VP schedule."""
        return self.g2(t)

    def discretize(self, T: int) -> DiscreteSchedule:
        r"""Sample :math:`\bar\alpha` at ``t_i = t_min + i (t_max - t_min)/T`` (needs
        :math:`\bar\alpha(t_{\min})=1` and a VP schedule)."""
        T = check_int("T", T, minimum=1, maximum=MAX_STEPS)
        t = torch.linspace(self.t_min, self.t_max, T + 1, dtype=torch.float64)
        return DiscreteSchedule(self.alpha_bar(t))


class VPSchedule(ContinuousSchedule):
    r"""Song et al.'s variance-preserving schedule with :math:`\beta(t)=\beta_{\min}+t(\beta_{\max}-\beta_{\min})`.

    :math:`\ln\bar\alpha_t=-\tfrac14t^2(\beta_{\max}-\beta_{\min})-\tfrac12t\beta_{\min}`,
    :math:`\bar\beta_t=\sqrt{1-\bar\alpha_t^2}`, :math:`f_t=-\tfrac12\beta(t)`,
    :math:`g_t^2=\beta(t)`. ``VPSchedule(0, 20)`` is Su's :math:`\bar\alpha_t=e^{-5t^2}` (:func:`su_vp`).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive("beta_min", beta_min, allow_zero=True)
        self.beta_max = check_positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")
        lo, hi = self.beta_min, self.beta_max

        def ab(t):
            return torch.exp(-0.25 * t**2 * (hi - lo) - 0.5 * t * lo)

        def bb(t):
            return torch.sqrt(-torch.expm1(-0.5 * t**2 * (hi - lo) - t * lo))

        super().__init__(ab, bb, 0.0, 1.0, name=f"VP(beta_min={lo:g}, beta_max={hi:g})")

    def beta_fn(self, t) -> torch.Tensor:
        r"""Song's :math:`\beta(t)`."""
        t = _as_time(t, self.t_min, self.t_max)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def f(self, t) -> torch.Tensor:
        return -0.5 * self.beta_fn(t)

    def g2(self, t) -> torch.Tensor:
        return self.beta_fn(t)


class VESchedule(ContinuousSchedule):
    r"""Song et al.'s variance-exploding schedule :math:`\bar\alpha_t=1`,
    :math:`\bar\beta_t=\sigma(t)=\sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t`;
    :math:`f_t=0`, :math:`g_t^2=\frac{d\sigma^2}{dt}=2\sigma(t)^2\ln\frac{\sigma_{\max}}{\sigma_{\min}}`."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got {sigma_max} <= {sigma_min}")
        smin, smax = self.sigma_min, self.sigma_max
        super().__init__(
            lambda t: torch.ones_like(t),
            lambda t: smin * (smax / smin) ** t,
            0.0,
            1.0,
            name=f"VE(sigma_min={smin:g}, sigma_max={smax:g})",
        )

    def f(self, t) -> torch.Tensor:
        return torch.zeros_like(_as_time(t, self.t_min, self.t_max))

    def g2(self, t) -> torch.Tensor:
        return 2 * self.beta_bar(t) ** 2 * math.log(self.sigma_max / self.sigma_min)


def su_vp() -> VPSchedule:
    r"""Su's continuous approximation of DDPM, :math:`\bar\alpha_t=e^{-5t^2}`: :math:`f_t=-10t`, :math:`g_t^2=20t`."""
    return VPSchedule(beta_min=0.0, beta_max=20.0)


# ========================================================================== notation table
#: One row per quantity: (meaning, this book, Ho et al. 2020, Song et al. 2021, Karras et al. 2022).
#: The notation page of the book and chapter 0 render this table, so prose and code cannot drift.
NOTATION: list[tuple[str, str, str, str, str]] = [
    ("signal coefficient of $p(x_t\\mid x_0)$", "$\\bar\\alpha_t$", "$\\sqrt{\\bar\\alpha_t}$",
     "mean coefficient $e^{\\int_0^t f}$", "$s(t)$"),
    ("noise std of $p(x_t\\mid x_0)$", "$\\bar\\beta_t=\\sqrt{1-\\bar\\alpha_t^2}$",
     "$\\sqrt{1-\\bar\\alpha_t}$", "std of the VP kernel", "$s(t)\\,\\sigma(t)$"),
    ("per-step signal coefficient", "$\\alpha_t=\\bar\\alpha_t/\\bar\\alpha_{t-1}$",
     "$\\sqrt{\\alpha_t}=\\sqrt{1-\\beta_t}$", "—", "—"),
    ("per-step noise std", "$\\beta_t=\\sqrt{1-\\alpha_t^2}$", "$\\sqrt{\\beta_t}$", "—", "—"),
    ("posterior variance of $x_{t-1}$", "$\\bar\\beta_{t-1}^2\\beta_t^2/\\bar\\beta_t^2$",
     "$\\tilde\\beta_t$", "—", "—"),
    ("noise-to-signal ratio", "$\\sigma_t=\\bar\\beta_t/\\bar\\alpha_t$",
     "$\\sqrt{(1-\\bar\\alpha_t)/\\bar\\alpha_t}$", "VE $\\sigma(t)$", "$\\sigma(t)$"),
    ("SDE drift (linear)", "$f_t=\\frac{d}{dt}\\ln\\bar\\alpha_t$", "—",
     "VP: $-\\frac12\\beta(t)$; VE: $0$", "$\\dot s/s$"),
    ("SDE diffusion squared", "$g_t^2=\\bar\\alpha_t^2\\frac{d}{dt}(\\bar\\beta_t^2/\\bar\\alpha_t^2)$", "—",
     "VP: $\\beta(t)$; VE: $\\frac{d\\sigma^2}{dt}$", "$2s^2\\dot\\sigma\\sigma$"),
    ("noise predictor", "$\\epsilon_\\theta(x_t,t)$", "$\\epsilon_\\theta$",
     "$-\\bar\\beta_t\\,s_\\theta$", "$(x-D)/\\sigma$ (with $s=1$)"),
    ("denoiser (posterior mean of $x_0$)", "$\\hat x_0(x_t)=E[x_0\\mid x_t]$",
     "$\\hat x_0$", "Tweedie", "$D(x;\\sigma)$"),
    ("score", "$\\nabla\\log p_t(x_t)$", "$-\\epsilon_\\theta/\\sqrt{1-\\bar\\alpha_t}$",
     "$s_\\theta(x,t)$", "$(D-x)/\\sigma^2$"),
]
