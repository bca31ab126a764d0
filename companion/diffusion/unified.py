r"""Chapter 4 — the unified diffusion model: any corruption, one recipe.

The forward process is given only through a reparameterisation (equation :eq:`udm-forward`)

.. math:: x_t=\mathcal F_t(x_0,\varepsilon),\qquad \varepsilon\sim q(\varepsilon),

and the reverse step is the exact factorisation (equation :eq:`udm-factor`)
:math:`p(x_{s}\mid x_t)=\int p(x_{s}\mid x_t,x_0)\,p(x_0\mid x_t)\,dx_0`: *estimate*
:math:`\hat x_0\sim p(x_0\mid x_t)`, then *correct* :math:`x_s\sim p(x_s\mid x_t,x_0=\hat x_0)`.
Only :math:`p(x_0\mid x_t)` is learned. The correction is free up to the marginal identity
(equation :eq:`udm-marginal`) :math:`\int p(x_s\mid x_t,x_0)p(x_t\mid x_0)dx_t=p(x_s\mid x_0)`, and three
designs satisfy it (equation :eq:`udm-designs`):

* :class:`Fresh` — corrupt :math:`\hat x_0` again with fresh noise, :math:`x_s=\mathcal F_s(\hat x_0,\varepsilon')`;
* :class:`Reuse` — recover the noise and reuse it, :math:`x_s=\mathcal F_s(\hat x_0,\mathcal F_t^{-1}(\hat x_0,x_t))`;
  when :math:`\varepsilon` is only partly identified by :math:`(x_0,x_t)` (masking, substitution),
  :math:`\mathcal F_t^{-1}` *draws* it from :math:`q(\varepsilon\mid x_0,x_t)`, which keeps the identity;
* :class:`GaussianRenoise` — replace a fraction of the recovered noise,
  :math:`\varepsilon_s=\sqrt{1-\tilde\sigma^2}\,\mathcal F_t^{-1}(\hat x_0,x_t)+\tilde\sigma\,\varepsilon'`;
  valid only for Gaussian :math:`q(\varepsilon)`.

Corruptions (:class:`Corruption`): :class:`GaussianNoise` (DDPM/DDIM), :class:`HeatBlur`
(heat-kernel blur by FFT or DCT, plus noise; Cold Diffusion when the noise is tiny or zero),
:class:`Additive` (a user degradation plus noise), :class:`Masking` and :class:`Substitution`.
One sampler, :func:`sample`, runs any estimator with any corruption and design;
:func:`cold_naive` and :func:`cold_improved` are two of its instances.

Times are integer indices ``0..T`` of the corruption (``0`` is clean data); a sampler visits
a strictly monotone list of them ending at 0, so skipping steps needs no special case.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.schedules import DiscreteSchedule
from ..core.utils import (
    append_dims,
    check_int,
    check_positive,
    check_tensor,
    make_generator,
    require_generator,
    seed_generator,
)

__all__ = [
    "edit_generate",
    "fit_linear_restorer",
    "NotInvertibleError",
    "Corruption",
    "Additive",
    "GaussianNoise",
    "HeatBlur",
    "Masking",
    "Substitution",
    "heat_blur",
    "laplacian_eigenvalues",
    "Design",
    "Fresh",
    "Reuse",
    "GaussianRenoise",
    "sample",
    "cold_naive",
    "cold_improved",
    "GaussianFit",
    "eps_model_estimator",
    "posterior_estimator",
    "gaussian_spread_estimator",
    "factorized_estimator",
    "x0_loss",
    "masked_lm_loss",
    "EnumeratedLaw",
    "TokenMLP",
]

Noise = torch.Tensor | tuple[torch.Tensor, ...]
Estimator = Callable[[torch.Tensor, int, torch.Generator | None], torch.Tensor]
Time = int | torch.Tensor


class NotInvertibleError(ValueError):
    """Raised when a design needs :math:`\\mathcal F_t^{-1}` but the corruption does not reveal its noise."""


# ============================================================================ helpers
def _time(t: Time, T: int, n: int | None, *, lo: int = 0) -> Time:
    """Validate a time: an int in ``[lo, T]`` or an integer tensor ``(n,)`` of such ints."""
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"t must be an integer time index (int or integer tensor), got dtype {t.dtype}")
        if t.ndim == 0:
            t = int(t.item())
        else:
            if n is not None and t.shape != (n,):
                raise ValueError(f"t as a tensor must have shape ({n},), got {tuple(t.shape)}")
            if t.numel() and (t.min() < lo or t.max() > T):
                raise ValueError(f"t must lie in [{lo}, {T}], got values in [{t.min().item()}, {t.max().item()}]")
            return t.long()
    t = check_int("t", t)
    if not lo <= t <= T:
        raise ValueError(f"t must be a time index in [{lo}, {T}], got {t}")
    return t


def _int_time(t, T: int) -> int:
    """A single time index (int or one-element integer tensor) in ``[0, T]`` (no negative wrap-around)."""
    t = _time(t, T, None)
    if isinstance(t, torch.Tensor):
        raise TypeError("t must be a single time index here (an int), got a tensor of several")
    return t


def _per_sample(values: torch.Tensor, t: Time, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` broadcastable against ``like`` (its dtype and device)."""
    if isinstance(t, torch.Tensor):
        v = values.to(like.device)[t.to(like.device)]
        return append_dims(v, like.ndim).to(like.dtype)
    return values[t].to(dtype=like.dtype, device=like.device)


def _ranks(keys: torch.Tensor) -> torch.Tensor:
    """Rank of each key within its row (0 = smallest), ``(n, L) -> (n, L)`` long."""
    return torch.argsort(torch.argsort(keys, dim=1), dim=1)


def _first_t(keys: torch.Tensor, t: Time) -> torch.Tensor:
    """Boolean ``(n, L)``: the ``t`` positions with the smallest keys in each row."""
    tt = t.to(keys.device)[:, None] if isinstance(t, torch.Tensor) else t
    return _ranks(keys) < tt


def _conditional_keys(chosen: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    r"""Exact draw of i.i.d. uniform keys conditioned on ``chosen`` being the set of smallest keys.

    The sorted uniforms are dealt first to the chosen positions (in random order), then to the
    others: this is the law of :math:`u\sim\mathcal U[0,1]^L` given that event.
    """
    n, L = chosen.shape
    dev = chosen.device
    v = torch.sort(torch.rand(n, L, generator=generator, dtype=torch.float64).to(dev), dim=1).values
    order = torch.argsort(torch.rand(n, L, generator=generator, dtype=torch.float64).to(dev) + (~chosen).double(), dim=1)
    keys = torch.empty_like(v)
    keys.scatter_(1, order, v)
    return keys


# ======================================================================== corruptions
class Corruption:
    r"""A forward corruption :math:`x_t=\mathcal F_t(x_0,\varepsilon)`, :math:`\varepsilon\sim q(\varepsilon)` (equation :eq:`udm-forward`).

    Subclasses implement :meth:`sample_noise` and :meth:`forward`, and :meth:`invert` where the
    noise can be recovered from :math:`(x_0,x_t)`. ``gaussian`` says whether :math:`q` is
    :math:`\mathcal N(0,I)`, which :class:`GaussianRenoise` requires.
    """

    T: int = 1
    gaussian: bool = False

    def sample_noise(self, x0: torch.Tensor, generator) -> Noise:
        """A draw :math:`\\varepsilon\\sim q(\\varepsilon)` for a batch like ``x0``."""
        raise NotImplementedError

    def forward(self, x0: torch.Tensor, t: Time, noise: Noise) -> torch.Tensor:
        r""":math:`\mathcal F_t(x_0,\varepsilon)`; ``t`` an int or an integer tensor ``(n,)``."""
        raise NotImplementedError

    def invert(self, x0: torch.Tensor, x_t: torch.Tensor, t: Time, generator=None) -> Noise:
        r""":math:`\mathcal F_t^{-1}(x_0,x_t)`: the noise (or a draw from :math:`q(\varepsilon\mid x_0,x_t)`)."""
        raise NotInvertibleError(f"{type(self).__name__} is not invertible in its noise")

    def noise_level(self, s: int) -> float | None:
        """Standard deviation of the additive noise at time ``s`` if the corruption has one (else ``None``)."""
        return None

    def check_invertible(self) -> None:
        """Raise :class:`NotInvertibleError`, saying why, if :meth:`invert` cannot work for this corruption."""
        if type(self).invert is Corruption.invert:
            raise NotInvertibleError(f"design Reuse needs the inverse F_t^-1, and {type(self).__name__} has none")

    def corrupt(self, x0: torch.Tensor, t: Time, generator) -> torch.Tensor:
        """Draw :math:`x_t\\sim p(x_t\\mid x_0)`: fresh noise pushed through :meth:`forward`."""
        return self.forward(x0, t, self.sample_noise(x0, require_generator(generator)))

    def reuse(self, x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int, generator=None) -> torch.Tensor:
        r"""Design (b): :math:`\mathcal F_s(x_0,\mathcal F_t^{-1}(x_0,x_t))` (equation :eq:`udm-reuse`)."""
        return self.forward(x0, s, self.invert(x0, x_t, t, generator))


class Additive(Corruption):
    r""":math:`\mathcal F_t(x_0,\varepsilon)=D(x_0,t)+s_t\,\varepsilon`, :math:`\varepsilon\sim\mathcal N(0,I)` (equation :eq:`udm-cold`).

    Cold Diffusion's degradations with optional noise. The noise is recovered as
    :math:`(x_t-D(x_0,t))/s_t` when :math:`s_t>0`. A *deterministic* degradation
    (:math:`s\equiv0`) is not invertible, but design (b) keeps a meaning as the limit of a
    constant noise level :math:`s\to0`: :math:`x_s=D(x_0,s)+x_t-D(x_0,t)` — Cold Diffusion's
    improved sampler.

    Args:
        degrade: ``D(x0, t) -> x`` with ``t`` an int or an integer tensor ``(n,)``.
        T: number of levels.
        noise_std: :math:`s_t`, a number (constant level) or a ``(T+1,)`` tensor, all ``>= 0``.
    """

    gaussian = True

    def __init__(self, degrade: Callable[[torch.Tensor, Time], torch.Tensor], T: int, noise_std=0.0):
        if not callable(degrade):
            raise TypeError("degrade must be callable (x0, t) -> x")
        self.T = check_int("T", T, minimum=1)
        self._degrade = degrade
        if isinstance(noise_std, torch.Tensor):
            s = check_tensor("noise_std", noise_std, ndim=1).to(torch.float64)
            if s.shape != (self.T + 1,):
                raise ValueError(f"noise_std as a tensor must have shape ({self.T + 1},), got {tuple(s.shape)}")
            if (s < 0).any():
                raise ValueError("noise_std must be >= 0")
        else:
            s = torch.full((self.T + 1,), check_positive("noise_std", noise_std, allow_zero=True), dtype=torch.float64)
        self.noise_std = s

    def degrade(self, x0: torch.Tensor, t: Time) -> torch.Tensor:
        """The deterministic part :math:`D(x_0,t)`."""
        if not isinstance(x0, torch.Tensor):
            raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
        if x0.ndim == 0:
            raise ValueError(f"x0 must have a batch dimension (n, ...), got shape {tuple(x0.shape)}")
        return self._degrade(x0, _time(t, self.T, x0.shape[0]))

    def noise_level(self, s: int) -> float:
        return self.noise_std[_time(s, self.T, None)].item()

    def sample_noise(self, x0: torch.Tensor, generator) -> torch.Tensor:
        x0 = check_tensor("x0", x0)
        return torch.randn(x0.shape, generator=require_generator(generator), dtype=x0.dtype, device=x0.device)

    def forward(self, x0: torch.Tensor, t: Time, noise: Noise) -> torch.Tensor:
        x0 = check_tensor("x0", x0)
        noise = check_tensor("noise", noise)
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        t = _time(t, self.T, x0.shape[0])
        return self.degrade(x0, t) + _per_sample(self.noise_std, t, x0) * noise

    def invert(self, x0: torch.Tensor, x_t: torch.Tensor, t: Time, generator=None) -> torch.Tensor:
        x0, x_t = check_tensor("x0", x0), check_tensor("x_t", x_t)
        if x_t.shape != x0.shape:
            raise ValueError(f"x_t must have the shape of x0 {tuple(x0.shape)}, got {tuple(x_t.shape)}")
        t = _time(t, self.T, x0.shape[0])
        s = self.noise_std[t]
        if (s <= 0).any():
            raise NotInvertibleError(
                f"{type(self).__name__} has noise_std = 0 at t = {t}: the corruption is deterministic there, so x_t "
                "carries no noise to recover (design 'reuse' is still defined as the small-noise limit)"
            )
        return (x_t - self.degrade(x0, t)) / _per_sample(self.noise_std, t, x0)

    def reuse(self, x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int, generator=None) -> torch.Tensor:
        r"""Design (b), equation :eq:`udm-reuse`; for :math:`s_t=s_s=0` the constant-noise limit
        :math:`x_s=x_t+D(x_0,s)-D(x_0,t)` (Cold Diffusion's Algorithm 2, equation :eq:`udm-cold-improved`)."""
        t, s = int(_time(t, self.T, None)), int(_time(s, self.T, None))
        if self.noise_std[t] > 0:
            return super().reuse(x0, x_t, t, s, generator)
        if self.noise_std[s] > 0:
            raise NotInvertibleError(
                f"noise_std is 0 at t = {t} but {self.noise_level(s):.3g} at s = {s}: the noise to reuse is not "
                "defined; use design Fresh or a positive noise level"
            )
        x0, x_t = check_tensor("x0", x0), check_tensor("x_t", x_t)
        return x_t + self.degrade(x0, s) - self.degrade(x0, t)


class GaussianNoise(Additive):
    r"""The DDPM corruption :math:`x_t=\bar\alpha_tx_0+\bar\beta_t\varepsilon` on a :class:`~companion.core.schedules.DiscreteSchedule` (equation :eq:`udm-gauss`).

    Times are the schedule's indices ``0..T``; sample on a subsequence by passing
    ``schedule.subsequence(S).timesteps`` to :func:`sample`.
    """

    def __init__(self, schedule: DiscreteSchedule):
        if not isinstance(schedule, DiscreteSchedule):
            raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        ab = schedule.alpha_bar
        super().__init__(lambda x0, t: _per_sample(ab, t, x0) * x0, schedule.T, schedule.beta_bar.clone())

    def linear_map(self, t: int) -> float:
        r"""The signal coefficient :math:`\bar\alpha_t` (for :func:`posterior_estimator`)."""
        return self.schedule.alpha_bar[_time(t, self.T, None)].item()

    def ddpm_fraction(self, t: int, s: int, eta: float = 1.0) -> float:
        r"""Fresh-noise fraction :math:`\tilde\sigma=\eta\,\beta_{t|s}/\bar\beta_t` that makes design (c) the
        DDPM step (``eta = 1``) or the DDIM-:math:`\eta` step from ``t`` to ``s < t`` (equation :eq:`udm-ddpm`).

        :math:`\beta_{t|s}^2=1-\bar\alpha_t^2/\bar\alpha_s^2`, so :math:`\bar\beta_s\tilde\sigma` is the
        DDPM posterior standard deviation on the (sub)sequence.
        """
        t, s = int(_time(t, self.T, None, lo=1)), int(_time(s, self.T, None))
        if s >= t:
            raise ValueError(f"s must be < t, got s = {s}, t = {t}")
        eta = check_positive("eta", eta, allow_zero=True)
        if eta > 1:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        ab, bb = self.schedule.alpha_bar, self.schedule.beta_bar
        beta_ts = math.sqrt(max(1.0 - (ab[t].item() / ab[s].item()) ** 2, 0.0))
        return eta * beta_ts / bb[t].item()


# --------------------------------------------------------------------------- heat blur
def laplacian_eigenvalues(n: int, boundary: str = "periodic") -> torch.Tensor:
    r"""Eigenvalues :math:`\lambda_k\ge0` of minus the 1-D discrete Laplacian on ``n`` points (equation :eq:`udm-heat`).

    ``'periodic'``: :math:`4\sin^2(\pi k/n)` in FFT order; ``'neumann'`` (reflecting ends):
    :math:`4\sin^2(\pi k/2n)` in DCT-II order. Float64 ``(n,)``.
    """
    n = check_int("n", n, minimum=1)
    k = torch.arange(n, dtype=torch.float64)
    if boundary == "periodic":
        return 4 * torch.sin(math.pi * k / n) ** 2
    if boundary == "neumann":
        return 4 * torch.sin(math.pi * k / (2 * n)) ** 2
    raise ValueError(f"boundary must be 'periodic' or 'neumann', got {boundary!r}")


def _dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``C`` (rows = frequencies), float64 ``(n, n)``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    C = torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
    C[0] /= math.sqrt(2.0)
    return C


def heat_blur(x: torch.Tensor, tau, ndim: int = 1, boundary: str = "periodic") -> torch.Tensor:
    r"""Heat semigroup :math:`e^{\tau\Delta}x` of the discrete Laplacian on the last ``ndim`` axes (equation :eq:`udm-heat`).

    Each frequency is damped by :math:`e^{-\tau\lambda_k}` (summed over axes), computed by FFT
    (``'periodic'``) or by the DCT-II (``'neumann'``). A Gaussian blur of standard deviation
    :math:`w` pixels is :math:`\tau=w^2/2`. ``tau``: a number or a ``(n,)`` tensor (one per sample).
    Output: shape, dtype and device of ``x``.
    """
    x = check_tensor("x", x)
    ndim = check_int("ndim", ndim, minimum=1)
    if x.ndim < ndim + 1 or 0 in x.shape[1:]:
        raise ValueError(f"x must have a batch axis and {ndim} non-empty signal axes, got shape {tuple(x.shape)}")
    if isinstance(tau, torch.Tensor) and tau.ndim > 0:
        tau = check_tensor("tau", tau, ndim=1)
        if tau.shape != (x.shape[0],) or (tau < 0).any():
            raise ValueError(f"tau as a tensor must be (n,) = ({x.shape[0]},) with entries >= 0")
        tau_b = append_dims(tau.to(torch.float64).to(x.device), x.ndim)
    else:
        tau_b = check_positive("tau", tau, allow_zero=True)  # type: ignore[assignment]  # a float broadcasts too
    if x.shape[0] == 0:  # an empty batch (the FFT refuses empty inputs)
        return x.clone()
    axes = list(range(x.ndim - ndim, x.ndim))
    lam = torch.zeros((), dtype=torch.float64, device=x.device)
    for ax in axes:
        shape = [1] * x.ndim
        shape[ax] = x.shape[ax]
        lam = lam + laplacian_eigenvalues(x.shape[ax], boundary).to(x.device).reshape(shape)
    damp = torch.exp(-tau_b * lam)
    xx = x.to(torch.float64)
    if boundary == "periodic":
        out = torch.fft.ifftn(torch.fft.fftn(xx, dim=axes) * damp, dim=axes).real
    else:
        out = xx
        for ax in axes:  # forward DCT along every signal axis
            C = _dct_matrix(x.shape[ax]).to(x.device)
            out = torch.movedim(torch.movedim(out, ax, -1) @ C.T, -1, ax)
        out = out * damp
        for ax in axes:  # inverse DCT
            C = _dct_matrix(x.shape[ax]).to(x.device)
            out = torch.movedim(torch.movedim(out, ax, -1) @ C, -1, ax)
    return out.to(x.dtype)


class HeatBlur(Additive):
    r"""Blur plus noise, :math:`x_t=e^{\tau_t\Delta}x_0+s_t\varepsilon` (equation :eq:`udm-blur`): a linear-Gaussian corruption.

    Args:
        shape: the signal shape, ``(n,)`` for 1-D signals or ``(H, W)`` for images (a channel
            axis in front is allowed in the data: the blur acts on the last ``len(shape)`` axes).
        widths: ``(T+1,)`` blur standard deviations :math:`w_t` in pixels, ``widths[0] = 0``
            (:math:`\tau_t=w_t^2/2`).
        noise_std: :math:`s_t`, a number or a ``(T+1,)`` tensor.
        boundary: ``'periodic'`` (FFT) or ``'neumann'`` (DCT, reflecting edges; better for images).
    """

    def __init__(self, shape: Sequence[int], widths: torch.Tensor, noise_std=0.0, boundary: str = "periodic"):
        shape = tuple(check_int("shape", s, minimum=1) for s in shape)
        if len(shape) not in (1, 2):
            raise ValueError(f"shape must be (n,) or (H, W), got {shape}")
        widths = check_tensor("widths", torch.as_tensor(widths, dtype=torch.float64), ndim=1).to(torch.float64)
        if (widths < 0).any() or widths[0] != 0:
            raise ValueError("widths must be >= 0 with widths[0] = 0 (t = 0 is the clean signal)")
        laplacian_eigenvalues(1, boundary)  # validates the boundary
        self.shape, self.boundary = shape, boundary
        self.widths = widths
        self.taus = widths**2 / 2
        taus, nd = self.taus, len(shape)

        def degrade(x0, t):
            x0 = check_tensor("x0", x0)
            if x0.ndim < nd + 1 or tuple(x0.shape[-nd:]) != shape:
                raise ValueError(f"x0 must have signal shape {shape} on its last {nd} axes (and a batch axis), "
                                 f"got {tuple(x0.shape)}")
            tau = self.taus[t] if isinstance(t, torch.Tensor) else taus[t].item()
            return heat_blur(x0, tau, nd, boundary)

        super().__init__(degrade, widths.numel() - 1, noise_std)

    @classmethod
    def linear(cls, shape: Sequence[int], T: int, max_width: float, noise_std=0.0, boundary: str = "periodic") -> HeatBlur:
        """Widths growing linearly, :math:`w_t=w_{\\max}\\,t/T` (Cold Diffusion's schedule)."""
        T = check_int("T", T, minimum=1)
        w = check_positive("max_width", max_width) * torch.arange(T + 1, dtype=torch.float64) / T
        return cls(shape, w, noise_std, boundary)

    def linear_map(self, t: int) -> torch.Tensor:
        """The blur at time ``t`` as a dense float64 ``(d, d)`` matrix on flattened signals, ``d = prod(shape)``."""
        t = int(_time(t, self.T, None))
        d = math.prod(self.shape)
        eye = torch.eye(d, dtype=torch.float64).reshape(d, *self.shape)
        return heat_blur(eye, self.taus[t].item(), len(self.shape), self.boundary).reshape(d, d).T


# ------------------------------------------------------------------- discrete corruptions
def _check_tokens(name: str, x, length: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(x).__name__}")
    if x.is_floating_point() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != length:
        raise ValueError(f"{name} must have shape (n, {length}), got {tuple(x.shape)}")
    return x


class Masking(Corruption):
    r"""Mask ``t`` uniformly chosen positions of a length-``L`` sequence (equation :eq:`udm-mask`); ``T = L``.

    The noise is a vector of i.i.d. uniform keys; the ``t`` smallest are masked. Given
    :math:`(x_0,x_t)` the masked *set* is known but not the keys' order, so :meth:`invert`
    draws the keys from their exact conditional law. Design (b) then unmasks one uniformly
    chosen masked position (the one with the largest key), equation :eq:`udm-mask-improved`.

    Args:
        length: sequence length ``L``.
        mask_token: the id of [MASK] (typically the vocabulary size ``V``).
    """

    def __init__(self, length: int, mask_token: int):
        self.length = check_int("length", length, minimum=1)
        self.mask_token = check_int("mask_token", mask_token)
        self.T = self.length

    def sample_noise(self, x0: torch.Tensor, generator) -> torch.Tensor:
        x0 = _check_tokens("x0", x0, self.length)
        return torch.rand(x0.shape, generator=require_generator(generator), dtype=torch.float64).to(x0.device)

    def forward(self, x0: torch.Tensor, t: Time, noise: Noise) -> torch.Tensor:
        x0 = _check_tokens("x0", x0, self.length)
        noise = check_tensor("noise", noise, ndim=2)
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
        t = _time(t, self.T, x0.shape[0])
        return torch.where(_first_t(noise, t), torch.full_like(x0, self.mask_token), x0)

    def invert(self, x0: torch.Tensor, x_t: torch.Tensor, t: Time, generator=None) -> torch.Tensor:
        x0, x_t = _check_tokens("x0", x0, self.length), _check_tokens("x_t", x_t, self.length)
        t = _time(t, self.T, x0.shape[0])
        masked = x_t == self.mask_token
        count = masked.sum(1)
        tt = t.to(count.device) if isinstance(t, torch.Tensor) else torch.full_like(count, t)
        if (count != tt).any():
            raise ValueError("x_t must have exactly t masked positions per row")
        if ((x_t != x0) & ~masked).any():
            raise ValueError("x0 must agree with x_t on the unmasked positions (p(x_t | x0) = 0 otherwise)")
        return _conditional_keys(masked, require_generator(generator))


class Substitution(Corruption):
    r"""Replace ``t`` uniformly chosen positions by random tokens (equation :eq:`udm-edit`); ``T = L``.

    With ``different=True`` (Su's fix) each replaced token is drawn uniformly among the
    :math:`V-1` *other* tokens, so :math:`(x_0,x_t)` reveals exactly which positions changed
    and by which offset; :meth:`invert` draws the rest of the noise from its conditional law,
    and design (b) reverts one changed position. With ``different=False`` a position may be
    "replaced" by its own token, the changed set is not identifiable, and only :class:`Fresh`
    applies.

    The noise is a pair ``(keys, offsets)``: uniform keys (the ``t`` smallest are replaced) and
    offsets in ``1..V-1`` (or ``0..V-1``); a replaced token is ``(x0 + offset) mod V``.
    """

    def __init__(self, length: int, vocab: int, different: bool = True):
        self.length = check_int("length", length, minimum=1)
        self.vocab = check_int("vocab", vocab, minimum=2)
        self.different = bool(different)
        self.T = self.length

    def sample_noise(self, x0: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = _check_tokens("x0", x0, self.length)
        g = require_generator(generator)
        keys = torch.rand(x0.shape, generator=g, dtype=torch.float64).to(x0.device)
        lo = 1 if self.different else 0
        off = torch.randint(lo, self.vocab, x0.shape, generator=g).to(x0.device)
        return keys, off

    def forward(self, x0: torch.Tensor, t: Time, noise: Noise) -> torch.Tensor:
        x0 = _check_tokens("x0", x0, self.length)
        if not (isinstance(noise, tuple) and len(noise) == 2):
            raise TypeError("noise must be a pair (keys, offsets)")
        keys, off = noise
        if keys.shape != x0.shape or off.shape != x0.shape:
            raise ValueError(f"keys and offsets must have the shape of x0 {tuple(x0.shape)}")
        t = _time(t, self.T, x0.shape[0])
        return torch.where(_first_t(keys, t), (x0 + off) % self.vocab, x0)

    def check_invertible(self) -> None:
        if not self.different:
            raise NotInvertibleError(
                "Substitution(different=False) is not invertible: a position replaced by its own token looks "
                "untouched, so (x0, x_t) does not reveal which positions were corrupted; use design Fresh, or "
                "different=True"
            )

    def invert(self, x0: torch.Tensor, x_t: torch.Tensor, t: Time, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_invertible()
        x0, x_t = _check_tokens("x0", x0, self.length), _check_tokens("x_t", x_t, self.length)
        t = _time(t, self.T, x0.shape[0])
        changed = x_t != x0
        count = changed.sum(1)
        tt = t.to(count.device) if isinstance(t, torch.Tensor) else torch.full_like(count, t)
        if (count != tt).any():
            raise ValueError("x_t must differ from x0 in exactly t positions per row")
        g = require_generator(generator)
        keys = _conditional_keys(changed, g)
        fresh = torch.randint(1, self.vocab, x0.shape, generator=g).to(x0.device)
        off = torch.where(changed, (x_t - x0) % self.vocab, fresh)
        return keys, off


# ============================================================================ designs
class Design:
    r"""A choice of :math:`p(x_s\mid x_t,x_0)` that satisfies the marginal identity (equation :eq:`udm-marginal`).

    ``design(corruption, x0_hat, x_t, t, s, generator) -> x_s``; :meth:`check` raises
    before sampling when the design is invalid for the corruption.
    """

    name = "design"

    def check(self, corruption: Corruption) -> None:
        if not isinstance(corruption, Corruption):
            raise TypeError(f"corruption must be a Corruption, got {type(corruption).__name__}")

    def __call__(self, corruption, x0_hat, x_t, t, s, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Fresh(Design):
    r"""Design (a), the baseline: :math:`x_s=\mathcal F_s(\hat x_0,\varepsilon')` with fresh noise (equation :eq:`udm-designs`).

    Valid for every corruption; with a point estimate it throws away what :math:`x_t` knew.
    With a deterministic degradation it is Cold Diffusion's naive sampler.
    """

    name = "fresh"

    def __call__(self, corruption, x0_hat, x_t, t, s, generator=None) -> torch.Tensor:
        if corruption.noise_level(s) == 0:  # a noiseless level: nothing to draw
            return corruption.forward(x0_hat, s, torch.zeros_like(x0_hat))
        return corruption.corrupt(x0_hat, s, generator)


class Reuse(Design):
    r"""Design (b): :math:`x_s=\mathcal F_s(\hat x_0,\mathcal F_t^{-1}(\hat x_0,x_t))` (equation :eq:`udm-reuse`).

    Raises :class:`NotInvertibleError` at :meth:`check` for a corruption without an inverse.
    """

    name = "reuse"

    def check(self, corruption: Corruption) -> None:
        super().check(corruption)
        corruption.check_invertible()

    def __call__(self, corruption, x0_hat, x_t, t, s, generator=None) -> torch.Tensor:
        return corruption.reuse(x0_hat, x_t, t, s, generator)


@dataclass(frozen=True)
class GaussianRenoise(Design):
    r"""Design (c): re-noise a fraction :math:`\tilde\sigma` of the recovered Gaussian noise (equation :eq:`udm-renoise`),

    .. math:: x_s=\mathcal F_s\big(\hat x_0,\ \sqrt{1-\tilde\sigma^2}\,\mathcal F_t^{-1}(\hat x_0,x_t)+\tilde\sigma\,\varepsilon'\big).

    The mixture of two independent :math:`\mathcal N(0,I)` vectors with these weights is again
    :math:`\mathcal N(0,I)` — true for Gaussian noise only, so :meth:`check` refuses other laws.

    Args:
        frac: :math:`\tilde\sigma\in[0,1]` (``0`` is :class:`Reuse`, ``1`` is :class:`Fresh`).
        eta: instead of ``frac``, DDIM's :math:`\eta`: :math:`\tilde\sigma` from
            :meth:`GaussianNoise.ddpm_fraction` (``eta=1`` is DDPM); :class:`GaussianNoise` only.
    """

    frac: float | None = None
    eta: float | None = None
    name = "gaussian"

    def __post_init__(self):
        if (self.frac is None) == (self.eta is None):
            raise ValueError("give exactly one of frac= or eta=")
        v = self.frac if self.frac is not None else self.eta
        v = check_positive("frac" if self.frac is not None else "eta", v, allow_zero=True)
        if v > 1:
            raise ValueError(f"{'frac' if self.frac is not None else 'eta'} must be in [0, 1], got {v}")

    def check(self, corruption: Corruption) -> None:
        super().check(corruption)
        if not corruption.gaussian:
            raise ValueError(
                f"design GaussianRenoise is invalid for {type(corruption).__name__}: it mixes the recovered noise "
                "with fresh N(0, I) noise, which keeps the law q(eps) only when q is Gaussian; use Reuse or Fresh"
            )
        if self.eta is not None and not isinstance(corruption, GaussianNoise):
            raise ValueError("eta= needs the DDPM posterior of a GaussianNoise corruption; give frac= instead")

    def fraction(self, corruption, t: int, s: int) -> float:
        return self.frac if self.frac is not None else corruption.ddpm_fraction(t, s, self.eta)

    def __call__(self, corruption, x0_hat, x_t, t, s, generator=None) -> torch.Tensor:
        f = self.fraction(corruption, t, s)
        eps = corruption.invert(x0_hat, x_t, t)
        level = corruption.noise_level(s)
        if f > 0 and (level is None or level > 0):  # draw only when the fresh noise matters
            z = torch.randn(x_t.shape, generator=require_generator(generator), dtype=x_t.dtype, device=x_t.device)
            eps = math.sqrt(1 - f * f) * eps + f * z
        return corruption.forward(x0_hat, s, eps)


# ============================================================================ sampler
def _times(times, T: int) -> list[int]:
    if isinstance(times, torch.Tensor):
        if times.is_floating_point():
            raise TypeError("times must be integer time indices")
        times = times.tolist()
    times = [check_int("times", v) for v in times]
    if len(times) < 2:
        raise ValueError("times must hold at least two indices (a start and 0)")
    if times[0] < times[-1]:
        times = times[::-1]
    if any(a <= b for a, b in itertools.pairwise(times)):
        raise ValueError("times must be strictly monotone (no repeats)")
    if times[-1] != 0 or times[0] > T:
        raise ValueError(f"times must run from a start <= T = {T} down to 0, got {times[0]} ... {times[-1]}")
    return times


@torch.no_grad()
def sample(
    estimator: Estimator,
    corruption: Corruption,
    x_T: torch.Tensor,
    times,
    design: Design,
    *,
    generator: torch.Generator | int | None = None,
    return_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
):
    r"""The unified sampler (equation :eq:`udm-sampler`): for consecutive times :math:`t>s`,
    :math:`\hat x_0\sim q(x_0\mid x_t)` by ``estimator``, then :math:`x_s` by ``design``.

    Args:
        estimator: ``(x_t, t, generator) -> x0_hat`` — a sampler of :math:`p(x_0\mid x_t)` or a
            point estimate (posterior mean, a restorer, ...).
        corruption: the forward process the estimator was trained on.
        x_T: start ``(n, ...)``, distributed as (an approximation of) :math:`p_{t_0}`.
        times: strictly monotone integer indices from the start ``t_0`` down to ``0`` (either
            order; a tensor such as ``schedule.subsequence(S).timesteps`` works). Skipping is free.
        design: :class:`Fresh`, :class:`Reuse` or :class:`GaussianRenoise`.
        generator: a ``torch.Generator`` or int seed for every random draw.
        return_x0: also return the list of :math:`\hat x_0` (one per step, start first).
        callback: called after each step with ``{'i', 't', 's', 'x', 'x_prev', 'x0_hat'}``.
        progress: show a ``tqdm`` bar.

    Returns:
        ``x_0`` (or ``(x_0, x0_hats)``).
    """
    if not callable(estimator):
        raise TypeError("estimator must be callable (x_t, t, generator) -> x0_hat")
    if not isinstance(design, Design):
        raise TypeError(f"design must be a Design (Fresh(), Reuse(), GaussianRenoise(...)), got {type(design).__name__}")
    design.check(corruption)
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if x_T.ndim == 0 or 0 in x_T.shape[1:]:
        raise ValueError(f"x_T must be a batch (n, ...) of non-empty signals, got shape {tuple(x_T.shape)}")
    if x_T.is_floating_point():
        check_tensor("x_T", x_T)
    times = _times(times, corruption.T)
    g = make_generator(generator) if generator is not None else None
    pairs = list(itertools.pairwise(times))
    if progress:
        from tqdm import tqdm

        pairs = tqdm(pairs, desc=f"sampling ({design.name})")
    x, x0s = x_T, []
    for i, (t, s) in enumerate(pairs):
        x0_hat = estimator(x, t, g)
        x_prev = design(corruption, x0_hat, x, t, s, g)
        if callback is not None:
            callback({"i": i, "t": t, "s": s, "x": x, "x_prev": x_prev, "x0_hat": x0_hat})
        if return_x0:
            x0s.append(x0_hat)
        x = x_prev
    return (x, x0s) if return_x0 else x


def cold_naive(restorer: Callable[[torch.Tensor, int], torch.Tensor], corruption: Additive, x_T, times, **kw):
    r"""Cold Diffusion's naive sampler (their Alg. 1): :math:`x_s=D(R(x_t),s)` — :func:`sample` with
    a point restorer and design :class:`Fresh` on a noiseless degradation (equation :eq:`udm-cold-naive`)."""
    return sample(lambda x, t, g: restorer(x, t), corruption, x_T, times, Fresh(), **kw)


def cold_improved(restorer: Callable[[torch.Tensor, int], torch.Tensor], corruption: Additive, x_T, times, **kw):
    r"""Cold Diffusion's improved sampler (their Alg. 2): :math:`x_s=x_t-D(\hat x_0,t)+D(\hat x_0,s)` —
    :func:`sample` with design :class:`Reuse` (equation :eq:`udm-cold-improved`)."""
    return sample(lambda x, t, g: restorer(x, t), corruption, x_T, times, Reuse(), **kw)


class GaussianFit:
    r"""The Gaussian :math:`\mathcal N(\hat\mu,\hat\Sigma)` fitted to samples ``x`` ``(n, *shape)``: the
    start law of a sampler whose :math:`x_T` is not pure noise, such as Cold Diffusion's heavily
    blurred images, drawn from a fit to corrupted training data (chapter 4, section 5).

    ``jitter`` is added to the diagonal of :math:`\hat\Sigma` before the Cholesky factor, so a
    rank-deficient fit (fewer points than dimensions, constant pixels) still yields a sampler.
    Computations are in float64; :meth:`sample` returns ``x``'s dtype.
    """

    def __init__(self, x: torch.Tensor, jitter: float = 1e-8):
        x = check_tensor("x", x)
        if x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 samples (n, ...), got shape {tuple(x.shape)}")
        jitter = check_positive("jitter", jitter, allow_zero=True)
        self.shape, self.dtype = tuple(x.shape[1:]), x.dtype
        flat = x.flatten(1).to(torch.float64)
        self.mean = flat.mean(0)
        self.cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
        eye = torch.eye(flat.shape[1], dtype=torch.float64)
        chol, info = torch.linalg.cholesky_ex(self.cov + jitter * eye)
        if info.item() != 0:
            raise ValueError("the fitted covariance is not positive definite: raise jitter")
        self.chol = chol

    def sample(self, n: int, generator: torch.Generator | int) -> torch.Tensor:
        """``n`` draws ``(n, *shape)`` of the fitted Gaussian, in the dtype of the fitted samples."""
        n = check_int("n", n, minimum=1)
        g = make_generator(generator)
        z = torch.randn(n, self.mean.numel(), generator=g, dtype=torch.float64)
        return (self.mean + z @ self.chol.T).to(self.dtype).reshape(n, *self.shape)


# ========================================================================= estimators
def fit_linear_restorer(corruption: Additive, x0: torch.Tensor, generator: torch.Generator | int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    r"""A restorer :math:`R(x_t,t)=W_tx_t+b_t` trained as an MMSE estimator: for every level ``t`` it minimises the
    empirical squared error :math:`\frac1n\sum\|x_0-R(\mathcal F_t(x_0,\varepsilon),t)\|^2` (equation :eq:`udm-loss`
    with a Gaussian :math:`q`) exactly, by least squares.

    For Gaussian data and a linear-Gaussian corruption the MMSE estimator :math:`E[x_0\mid x_t]` is affine,
    so this restorer converges to it as ``n`` grows. ``x0``: ``(n, ...)`` training data; the corrupted
    copies are drawn with ``generator``. Returns ``restorer(x_t, t) -> x0_hat`` for ``t`` in ``1..T``.
    """
    if not isinstance(corruption, Additive):
        raise TypeError(f"corruption must be an Additive corruption, got {type(corruption).__name__}")
    x0 = check_tensor("x0", x0)
    if x0.ndim < 2 or x0.shape[0] < 2:
        raise ValueError(f"x0 must be a batch (n, ...) with n >= 2, got shape {tuple(x0.shape)}")
    g = make_generator(generator)
    n, shape = x0.shape[0], x0.shape[1:]
    flat0 = x0.reshape(n, -1)
    coefs = {}
    for t in range(1, corruption.T + 1):
        xt = corruption.corrupt(x0, t, g).reshape(n, -1)
        design = torch.cat([xt, torch.ones(n, 1, dtype=xt.dtype, device=xt.device)], dim=1)
        coefs[t] = torch.linalg.lstsq(design, flat0).solution          # (d+1, d)

    def restorer(x: torch.Tensor, t) -> torch.Tensor:
        t = _int_time(t, corruption.T)
        if t == 0:
            return x
        x = check_tensor("x", x)
        if x.shape[1:] != shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        W = coefs[t]
        return (x.flatten(1) @ W[:-1] + W[-1]).reshape(x.shape)

    return restorer


def eps_model_estimator(model: Callable[[torch.Tensor, int], torch.Tensor], corruption: GaussianNoise) -> Estimator:
    r"""Point estimate :math:`\hat x_0=(x_t-\bar\beta_t\epsilon_\theta(x_t,t))/\bar\alpha_t` from a noise
    predictor ``model(x, t) -> eps`` (equation :eq:`udm-gauss`); :math:`\bar\sigma_t=0`, i.e. DDPM/DDIM."""
    if not isinstance(corruption, GaussianNoise):
        raise TypeError(f"corruption must be GaussianNoise, got {type(corruption).__name__}")
    if not callable(model):
        raise TypeError(f"model must be callable (x, t) -> eps, got {type(model).__name__}")
    ab, bb = corruption.schedule.alpha_bar, corruption.schedule.beta_bar

    def est(x, t, g=None):
        t = _int_time(t, corruption.T)
        x = check_tensor("x", x)
        e = model(x, t)
        if not isinstance(e, torch.Tensor) or e.shape != x.shape:
            raise ValueError(f"model must return a tensor of the shape of x {tuple(x.shape)}")
        if not torch.isfinite(e).all():
            raise ValueError(f"model returned NaN or infinite values at t = {t}")
        return (x - bb[t].item() * e) / ab[t].item()

    return est


def posterior_estimator(mixture, corruption: Additive, mode: str = "sample") -> Estimator:
    r"""The exact :math:`p(x_0\mid x_t)` of a :class:`~companion.core.gmm.GaussianMixture` under a linear-Gaussian
    corruption (:class:`GaussianNoise` or :class:`HeatBlur`): ``mode='sample'`` draws from it
    (the exact UDM step), ``'mean'`` returns its mean (the best point estimate, DDIM's
    :math:`\hat x_0` with the exact model). Signals of any shape are flattened to ``d`` coordinates.
    """
    if mode not in ("sample", "mean"):
        raise ValueError(f"mode must be 'sample' or 'mean', got {mode!r}")
    if not hasattr(corruption, "linear_map"):
        raise TypeError(f"{type(corruption).__name__} is not linear-Gaussian (no linear_map)")
    if not hasattr(mixture, "posterior"):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")

    def est(x, t, g=None):
        x = check_tensor("x", x)
        if x.ndim < 2 or 0 in x.shape[1:]:
            raise ValueError(f"x must be a batch (n, ...) of non-empty signals, got shape {tuple(x.shape)}")
        flat = x.flatten(1)
        post = mixture.posterior(flat, corruption.linear_map(t), corruption.noise_level(t))
        out = post.sample(require_generator(g)) if mode == "sample" else post.mean()
        return out.reshape(x.shape)

    return est


def gaussian_spread_estimator(point: Estimator, x0_std: torch.Tensor) -> Estimator:
    r""":math:`\hat x_0=\bar\mu(x_t)+\bar\sigma_t z` (equation :eq:`udm-analytic`): a point estimator widened into the
    isotropic Gaussian :math:`q(x_0\mid x_t)=\mathcal N(\bar\mu,\bar\sigma_t^2I)` of Analytic-DPM.

    ``x0_std``: ``(T+1,)`` standard deviations :math:`\bar\sigma_t` indexed by time.
    """
    if not callable(point):
        raise TypeError(f"point must be an estimator (x_t, t, generator) -> x0_hat, got {type(point).__name__}")
    x0_std = check_tensor("x0_std", x0_std, ndim=1)
    if x0_std.numel() < 2 or (x0_std < 0).any():
        raise ValueError(f"x0_std must be a (T+1,) tensor (T >= 1) of values >= 0, got shape {tuple(x0_std.shape)}")

    def est(x, t, g=None):
        t = _int_time(t, x0_std.numel() - 1)
        m = point(x, t, g)
        sd = x0_std[t].item()
        if sd == 0:
            return m
        return m + sd * torch.randn(m.shape, generator=require_generator(g), dtype=m.dtype, device=m.device)

    return est


def factorized_estimator(marginals: Callable[[torch.Tensor, int], torch.Tensor], mask_token: int) -> Estimator:
    r"""What a masked language model gives: every masked position drawn *independently* from its
    marginal :math:`p(x_0^{(i)}\mid x_t)`; unmasked tokens are kept (equation :eq:`udm-mask`).

    ``marginals(x_t, t) -> (n, L, V)`` probabilities (exact ones from :meth:`EnumeratedLaw.masked_marginals`,
    or a softmax of :class:`TokenMLP` logits).
    """
    mask_token = check_int("mask_token", mask_token)

    if not callable(marginals):
        raise TypeError(f"marginals must be callable (x_t, t) -> (n, L, V), got {type(marginals).__name__}")

    def est(x, t, g=None):
        p = marginals(x, t)
        if not isinstance(p, torch.Tensor) or p.ndim != 3 or p.shape[:2] != x.shape:
            raise ValueError(f"marginals must return probabilities of shape (n, L, V) with (n, L) = {tuple(x.shape)}")
        if not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError("marginals must return finite, non-negative probabilities")
        n, L, V = p.shape
        draw = torch.multinomial(p.reshape(n * L, V).double(), 1, generator=require_generator(g))[:, 0].reshape(n, L).to(x.device)
        return torch.where(x == mask_token, draw, x)

    return est


@torch.no_grad()
def edit_generate(
    marginals: Callable[[torch.Tensor, int], torch.Tensor],
    corruption: Substitution,
    x_T: torch.Tensor,
    *,
    design: str = "improved",
    generator: torch.Generator | int,
) -> torch.Tensor:
    r"""Generate with the editing model (:class:`Substitution`, ``different=True``) from level ``T = L`` down to 0, one level per step
    (equation :eq:`udm-edit-step`).

    ``design='improved'`` is design (b): revert one changed position. Marginalising the exact posterior,
    position :math:`i` is reverted with probability :math:`P(x_0^{(i)}\ne x_t^{(i)}\mid x_t)/t` to a token
    :math:`v\ne x_t^{(i)}` with probability :math:`\propto p(x_0^{(i)}=v\mid x_t)`, so the step needs only the
    per-position marginals and is exact when they are. ``'baseline'`` is design (a): draw every position of
    :math:`\hat x_0` independently from its marginal, then corrupt it afresh to level :math:`t-1`.

    Args:
        marginals: ``(x_t, t) -> (n, L, V)`` probabilities (e.g. :meth:`EnumeratedLaw.substituted_marginals`).
        x_T: ``(n, L)`` tokens at level ``L``; generator: a ``torch.Generator`` or int seed.

    Returns:
        ``(n, L)`` tokens at level 0.
    """
    if not isinstance(corruption, Substitution):
        raise TypeError(f"corruption must be a Substitution, got {type(corruption).__name__}")
    corruption.check_invertible()
    if design not in ("improved", "baseline"):
        raise ValueError(f"design must be 'improved' or 'baseline', got {design!r}")
    if not callable(marginals):
        raise TypeError("marginals must be callable (x_t, t) -> (n, L, V)")
    x = _check_tokens("x_T", x_T, corruption.length).clone()
    g = make_generator(generator)
    n, L, V = x.shape[0], corruption.length, corruption.vocab
    rows = torch.arange(n)
    for t in range(corruption.T, 0, -1):
        p = marginals(x, t)
        if not isinstance(p, torch.Tensor) or p.shape != (n, L, V) or not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError(f"marginals must return finite probabilities >= 0 of shape ({n}, {L}, {V})")
        p = p.double()
        if design == "improved":
            own = p.gather(2, x[:, :, None])[:, :, 0]                       # P(x0_i = x_t,i | x_t)
            changed = (1 - own).clamp_min(0)
            pos = torch.multinomial(changed + 1e-300, 1, generator=g)[:, 0]
            pv = p[rows, pos].clone()
            pv[rows, x[rows, pos]] = 0.0
            x[rows, pos] = torch.multinomial(pv + 1e-300 * (pv.sum(1, keepdim=True) == 0), 1, generator=g)[:, 0]
        else:
            x0_hat = torch.multinomial(p.reshape(n * L, V), 1, generator=g)[:, 0].reshape(n, L)
            x = corruption.corrupt(x0_hat, t - 1, g) if t > 1 else x0_hat
    return x


# ============================================================================ training
def x0_loss(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    corruption: Corruption,
    x0: torch.Tensor,
    generator: torch.Generator,
    *,
    p: int = 2,
    t_min: int = 1,
) -> torch.Tensor:
    r"""Restoration loss :math:`E\,\|x_0-\mathcal G_\theta(\mathcal F_t(x_0,\varepsilon),t)\|_p^p/D` with
    :math:`t\sim\mathcal U\{t_{\min}..T\}` (equation :eq:`udm-loss`): ``p=2`` is a Gaussian :math:`q(x_0\mid x_t)`,
    ``p=1`` the Laplace one behind Cold Diffusion. Plugs into :func:`companion.core.train.fit`.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    if not isinstance(corruption, Corruption):
        raise TypeError(f"corruption must be a Corruption, got {type(corruption).__name__}")
    if not callable(model):
        raise TypeError(f"model must be callable (x_t, t) -> x0_hat, got {type(model).__name__}")
    x0 = check_tensor("x0", x0)
    if x0.ndim == 0 or x0.shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty batch (n, ...), got shape {tuple(x0.shape)}")
    g = require_generator(generator)
    n = x0.shape[0]
    t_min = check_int("t_min", t_min, minimum=0)
    if t_min > corruption.T:
        raise ValueError(f"t_min must be <= T = {corruption.T}, got {t_min}")
    t = torch.randint(t_min, corruption.T + 1, (n,), generator=g)
    x_t = corruption.corrupt(x0, t, g)
    out = model(x_t, t.to(x0.dtype))
    if not isinstance(out, torch.Tensor) or out.shape != x0.shape:
        raise ValueError(f"model must return a tensor of the shape of x0 {tuple(x0.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError("model returned NaN or infinite values")
    err = (x0 - out).abs() ** p
    return err.reshape(n, -1).mean()


def masked_lm_loss(model: nn.Module, corruption: Masking, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""Cross-entropy :math:`-\log q_\theta(x_0^{(i)}\mid x_t)` on the masked positions, :math:`t\sim\mathcal U\{1..L\}`
    (equation :eq:`udm-loss` for tokens). ``model(x_t) -> (n, L, V)`` logits."""
    if not isinstance(corruption, Masking):
        raise TypeError(f"corruption must be Masking, got {type(corruption).__name__}")
    if not callable(model):
        raise TypeError(f"model must be callable x_t -> logits, got {type(model).__name__}")
    x0 = _check_tokens("x0", x0, corruption.length)
    if x0.shape[0] == 0:
        raise ValueError("x0 must hold at least one sequence")
    if (x0 < 0).any() or (x0 == corruption.mask_token).any():
        raise ValueError(f"x0 must hold token ids >= 0 other than the mask token {corruption.mask_token}")
    g = require_generator(generator)
    t = torch.randint(1, corruption.T + 1, (x0.shape[0],), generator=g)
    x_t = corruption.corrupt(x0, t, g)
    logits = model(x_t)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != x0.shape:
        raise ValueError(f"model must return logits (n, L, V) with (n, L) = {tuple(x0.shape)}")
    if (x0 >= logits.shape[-1]).any():
        raise ValueError(f"x0 holds token ids >= the model's vocabulary {logits.shape[-1]}")
    m = x_t == corruption.mask_token
    return nn.functional.cross_entropy(logits[m], x0[m])


# ===================================================================== discrete toy law
#: Largest number of states an :class:`EnumeratedLaw` enumerates (V**L sequences, each stored).
MAX_STATES = 2**20


def _check_n_states(vocab: int, length: int) -> None:
    if vocab**length > MAX_STATES:
        raise ValueError(f"V**L = {vocab}**{length} = {vocab**length:.3g} states is too many to enumerate "
                         f"(limit {MAX_STATES}); use a smaller vocab or length")


class EnumeratedLaw:
    r"""A law on sequences of length ``L`` over ``V`` symbols, stored as its full pmf (``V**L`` states).

    Everything is exact by enumeration: sampling, the per-position posterior marginals under
    masking (:meth:`masked_marginals`), and total variation of a sample to the law.
    """

    def __init__(self, pmf: torch.Tensor, vocab: int, length: int):
        self.vocab = check_int("vocab", vocab, minimum=2)
        self.length = check_int("length", length, minimum=1)
        _check_n_states(vocab, length)
        pmf = check_tensor("pmf", torch.as_tensor(pmf, dtype=torch.float64)).reshape(-1)
        if pmf.numel() != vocab**length:
            raise ValueError(f"pmf must have V**L = {vocab**length} entries, got {pmf.numel()}")
        if (pmf < 0).any() or abs(pmf.sum().item() - 1) > 1e-9:
            raise ValueError("pmf must be non-negative and sum to 1")
        self.pmf = pmf
        # states in lexicographic order: state id = sum_i x_i V^(L-1-i)
        self.states = torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)
        self._pow = vocab ** torch.arange(length - 1, -1, -1)

    @classmethod
    def chain(cls, vocab: int = 3, length: int = 4, coupling: float = 1.5, field: float = 0.2, seed: int = 0) -> EnumeratedLaw:
        r"""A Potts chain :math:`p(x)\propto\exp\big(J\sum_i\mathbb 1[x_i=x_{i+1}]+\sum_ih_{x_i}\big)` with random
        fields :math:`h\sim\mathcal N(0,\text{field}^2)` (from ``seed``): adjacent tokens are correlated,
        so the joint is far from the product of its marginals."""
        vocab, length = check_int("vocab", vocab, minimum=2), check_int("length", length, minimum=1)
        _check_n_states(vocab, length)
        h = field * torch.randn(vocab, generator=seed_generator(seed), dtype=torch.float64)
        s = torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)
        energy = coupling * (s[:, 1:] == s[:, :-1]).double().sum(1) + h[s].sum(1)
        return cls(torch.softmax(energy, 0), vocab, length)

    @property
    def n_states(self) -> int:
        return self.pmf.numel()

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """State ids of sequences ``(n, L)`` -> ``(n,)``."""
        x = _check_tokens("x", x, self.length)
        if (x < 0).any() or (x >= self.vocab).any():
            raise ValueError(f"x must hold tokens in 0..{self.vocab - 1} (no [MASK] left)")
        return (x.cpu() * self._pow).sum(1)

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """``n`` exact draws, ``(n, L)`` long."""
        n = check_int("n", n, minimum=1)
        return self.states[torch.multinomial(self.pmf, n, replacement=True, generator=make_generator(generator))]

    def empirical(self, x: torch.Tensor) -> torch.Tensor:
        """Empirical pmf of a sample ``(n, L)``, float64 ``(V**L,)``."""
        return torch.bincount(self.index(x), minlength=self.n_states).double() / x.shape[0]

    def tv(self, x: torch.Tensor) -> float:
        r"""Total variation :math:`\frac12\sum|\hat p-p|` between a sample and the law."""
        return 0.5 * (self.empirical(x) - self.pmf).abs().sum().item()

    def masked_marginals(self, x_t: torch.Tensor, mask_token: int) -> torch.Tensor:
        r"""Exact :math:`p(x_0^{(i)}=v\mid x_t)` for every position, ``(n, L) -> (n, L, V)`` float64 (equation :eq:`udm-mask`).

        The posterior of :math:`x_0` given a masked :math:`x_t` is the law restricted to the
        states that agree with :math:`x_t` on its unmasked positions.
        """
        x_t = _check_tokens("x_t", x_t, self.length).cpu()
        masked = x_t == mask_token
        agree = ((self.states[None] == x_t[:, None]) | masked[:, None]).all(-1)  # (n, K)
        w = agree.double() * self.pmf
        z = w.sum(1, keepdim=True)
        if (z <= 0).any():
            raise ValueError("x_t has probability 0 under the law (its unmasked tokens are impossible)")
        w = w / z
        onehot = nn.functional.one_hot(self.states, self.vocab).double()  # (K, L, V)
        return torch.einsum("nk,klv->nlv", w, onehot)

    def substituted_pmf(self, t: int) -> torch.Tensor:
        r"""The exact law :math:`p_t` of :math:`x_t` under :class:`Substitution` (``different=True``) at level ``t``,
        ``(V**L,)`` float64: :math:`p_t(x)=\sum_{x_0}p(x_0)\,\mathbb 1[d(x,x_0)=t]\big/\big(\binom Lt(V-1)^t\big)`,
        with :math:`d` the Hamming distance (equation :eq:`udm-edit`)."""
        t = check_int("t", t)
        if t > self.length:
            raise ValueError(f"t must be in 0..{self.length}, got {t}")
        dist = (self.states[:, None] != self.states[None]).sum(-1)                     # (K, K)
        kern = (dist == t).double() / (math.comb(self.length, t) * (self.vocab - 1) ** t)
        return kern @ self.pmf

    def substituted_marginals(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        r"""Exact :math:`p(x_0^{(i)}=v\mid x_t)` under :class:`Substitution` (``different=True``) at level ``t``,
        ``(n, L) -> (n, L, V)`` float64. The likelihood :math:`p(x_t\mid x_0)` is constant on the states at
        Hamming distance ``t`` from :math:`x_t` and zero elsewhere, so the posterior is the law restricted to them."""
        x_t = _check_tokens("x_t", x_t, self.length).cpu()
        t = check_int("t", t)
        if t > self.length:
            raise ValueError(f"t must be in 0..{self.length}, got {t}")
        w = ((self.states[None] != x_t[:, None]).sum(-1) == t).double() * self.pmf
        z = w.sum(1, keepdim=True)
        if (z <= 0).any():
            raise ValueError("x_t has probability 0 at this level")
        onehot = nn.functional.one_hot(self.states, self.vocab).double()
        return torch.einsum("nk,klv->nlv", w / z, onehot)


class TokenMLP(nn.Module):
    """A small non-autoregressive model of :math:`q(x_0\\mid x_t)` for token sequences: one-hot
    input over ``V + 1`` symbols (the last is [MASK]) -> logits ``(n, L, V)``."""

    def __init__(self, vocab: int, length: int, hidden: int = 128):
        super().__init__()
        self.vocab, self.length = check_int("vocab", vocab, minimum=2), check_int("length", length, minimum=1)
        d_in = length * (vocab + 1)
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, length * vocab)
        )

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        x_t = _check_tokens("x_t", x_t, self.length)
        if x_t.numel() and ((x_t < 0).any() or (x_t > self.vocab).any()):
            raise ValueError(f"x_t must hold token ids in 0..{self.vocab} (the last one is [MASK])")
        h = nn.functional.one_hot(x_t, self.vocab + 1).float().reshape(x_t.shape[0], -1)
        return self.net(h).reshape(-1, self.length, self.vocab)
