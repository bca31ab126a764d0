r"""The one model convention of the σ-samplers, its preconditioned network, and the converters.

A *denoiser* ``D(x, sigma) -> x0_hat`` is what every sampler of :mod:`companion.diffusion.samplers`
calls (``sigma`` a float, or a tensor ``(n,)`` as in k-diffusion); a *score* ``s(x, sigma)`` is what
chapter 3's solvers of :mod:`companion.diffusion.ode` call. Tweedie's formula
:math:`\hat x_0=x+\sigma^2\nabla\log p_\sigma(x)` (equation :eq:`ode-sigma`) turns one into the other.
:class:`ScoreNet` is the preconditioned network shared by the chapters (Karras et al.'s
:math:`c_{\rm skip},c_{\rm out},c_{\rm in},c_{\rm noise}`, equation :eq:`ode-precond`), and the converters
below give its other views: chapter 1's noise predictor (:func:`eps_model`), chapter 2's score in the
SDE's time (:func:`vp_score`) and the samplers' denoiser (:func:`denoiser_fn`). Every converter tags
what it returns, so passing one kind where another is expected raises an error that names the
converter (:func:`companion.core.utils.check_kind`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..core.nets import UNet
from ..core.schedules import DiscreteSchedule
from ..core.utils import (
    append_dims,
    check_batch,
    check_int,
    check_kind,
    check_positive,
    check_tensor,
    checking,
    mark_kind,
    require_generator,
)

__all__ = [
    "ScoreFn",
    "Denoiser",
    "ScoreNet",
    "csm_loss",
    "denoiser_fn",
    "eps_model",
    "vp_score",
    "denoiser_from_score",
    "score_from_denoiser",
]

ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]


Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


class ScoreNet(nn.Module):
    r"""A network as a score function, with Karras et al.'s preconditioning.


    The denoiser is :math:`\hat x_0=c_{\rm skip}x+c_{\rm out}F(c_{\rm in}x,c_{\rm noise})` with
    :math:`c_{\rm in}=1/\sqrt{\sigma^2+\sigma_d^2}`, :math:`c_{\rm skip}=\sigma_d^2/(\sigma^2+\sigma_d^2)`,
    :math:`c_{\rm out}=\sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}`, :math:`c_{\rm noise}=\tfrac14\ln\sigma`,
    and the score is Tweedie's :math:`(\hat x_0-x)/\sigma^2`. ``net(x, t)``: any
    ``(n, ...), (n,) -> (n, ...)`` module (e.g. :class:`companion.core.nets.TimeMLP`).
    Calling ``ScoreNet(x, sigma)`` returns the score, so it plugs into every solver here.
    """


    #: a ScoreNet's call returns the score (the samplers' kind checks, :func:`companion.core.utils.check_kind`)
    model_kind = "score"


    def __init__(self, net: nn.Module, sigma_data: float = 1.0):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.sigma_data = check_positive("sigma_data", sigma_data)


    def _sigma(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            sigma = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
        sigma = check_tensor("sigma", sigma, ndim=(0, 1)).to(dtype=x.dtype, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        if checking() and sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a float or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
        if checking() and sigma.device.type != "meta" and not (sigma > 0).all():  # meta tensors hold no values
            raise ValueError("sigma must be > 0")
        return sigma


    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        r"""The denoiser :math:`\hat x_0(x,\sigma)`; ``x``: ``(n, ...)``, ``sigma``: float or ``(n,)``."""
        x = check_batch("x", x, min_ndim=2, allow_empty=True)
        s = self._sigma(x, sigma)
        sd2 = self.sigma_data**2
        c_in = append_dims((s**2 + sd2).rsqrt(), x.ndim)
        c_skip = append_dims(sd2 / (s**2 + sd2), x.ndim)
        c_out = append_dims(s * self.sigma_data * (s**2 + sd2).rsqrt(), x.ndim)
        return c_skip * x + c_out * self.net(c_in * x, 0.25 * torch.log(s))


    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = append_dims(self._sigma(check_batch("x", x, min_ndim=2, allow_empty=True), sigma), x.ndim)
        return (self.denoise(x, sigma) - x) / s**2


def csm_loss(model: ScoreNet, x0: torch.Tensor, generator: torch.Generator | int | None, *,
             p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    r"""Conditional score matching (equation :eq:`ode-csm`) in the denoiser form, as a scalar loss.


    Draw :math:`\ln\sigma\sim\mathcal N(p_{\rm mean},p_{\rm std}^2)` and
    :math:`x=x_0+\sigma\varepsilon`. The kernel's score target is :math:`-(x-x_0)/\sigma^2`, and
    with :math:`s=(\hat x_0-x)/\sigma^2` the residual is :math:`s+(x-x_0)/\sigma^2=(\hat x_0-x_0)/\sigma^2`.
    The loss is :math:`\lambda'(\sigma)\|\hat x_0-x_0\|^2` with Karras et al.'s
    :math:`\lambda'=(\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2`, i.e. equation :eq:`ode-csm` with
    :math:`\lambda(\sigma)=\sigma^4\lambda'(\sigma)`; it makes the regression target of the
    network unit-variance at every noise level. Averaged over coordinates and the batch.
    ``x0``: ``(n, ...)`` in the model's dtype.
    """
    if not isinstance(model, ScoreNet):
        raise TypeError(f"model must be a ScoreNet, got {type(model).__name__}")
    x0 = check_batch("x0", x0, min_ndim=2)
    p_std = check_positive("p_std", p_std)
    if isinstance(p_mean, bool) or not isinstance(p_mean, (int, float)) or not math.isfinite(p_mean):
        raise ValueError(f"p_mean must be a finite real number, got {p_mean!r}")
    generator = require_generator(generator)
    n = x0.shape[0]
    log_s = p_mean + p_std * torch.randn(n, generator=generator, dtype=x0.dtype, device=x0.device)
    s = log_s.exp()
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x = x0 + append_dims(s, x0.ndim) * eps
    sd2 = model.sigma_data**2
    weight = append_dims((s**2 + sd2) / (s * model.sigma_data) ** 2, x0.ndim)
    return (weight * (model.denoise(x, s) - x0) ** 2).flatten(1).mean(1).mean()


def denoiser_fn(model: ScoreNet):
    """``(x, sigma) -> x0_hat`` (the samplers' interface of :mod:`companion.diffusion.samplers`), run without
    gradients; ``x``: ``(n, C, H, W)``, ``sigma`` a float > 0."""
    if not isinstance(model, ScoreNet):
        raise TypeError(f"model must be a ScoreNet, got {type(model).__name__}")


    @torch.no_grad()
    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return model.denoise(x, sigma)


    return mark_kind(denoise, "denoiser")


def eps_model(model: ScoreNet, schedule: DiscreteSchedule):
    r"""Chapter 1's noise predictor ``(x_t, t_label) -> eps`` from a denoiser trained on
    :math:`x_0+\sigma\varepsilon` (equation :eq:`ddpm-eps-from-denoiser`).


    Dividing :math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon` by :math:`\bar\alpha_t` gives
    :math:`x_0+\sigma_t\varepsilon` with :math:`\sigma_t=\bar\beta_t/\bar\alpha_t`, so
    :math:`\hat\varepsilon=(x_t/\bar\alpha_t-\hat x_0)/\sigma_t`. ``schedule`` must be the *full*
    schedule whose labels :func:`companion.diffusion.ddpm.sample` passes (a subsequence keeps them).
    ``x_t``: ``(n, C, H, W)`` or flattened ``(n, C·H·W)``.
    """
    if not isinstance(model, ScoreNet):
        raise TypeError(f"model must be a ScoreNet, got {type(model).__name__}")
    if not isinstance(schedule, DiscreteSchedule):
        raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
    shape = _image_shape(model)


    @torch.no_grad()
    def eps(x_t: torch.Tensor, t_label: int) -> torch.Tensor:
        x_t = check_batch("x_t", x_t, min_ndim=2, allow_empty=True)
        t = check_int("t_label", t_label, minimum=1)
        if t > schedule.T:
            raise ValueError(f"t_label must be in [1, {schedule.T}], got {t}")
        a, s = schedule.alpha_bar[t].item(), schedule.sigma[t].item()
        img = x_t.reshape(x_t.shape[0], *shape) if shape is not None and x_t.ndim == 2 else x_t
        x = img / a
        return ((x - model.denoise(x, s)) / s).reshape(x_t.shape)


    return mark_kind(eps, "eps")


def vp_score(model: ScoreNet, sde):
    r"""Chapter 2's score :math:`\nabla\log p_t(x_t)` of a :class:`companion.diffusion.sde.SDE` from the denoiser.


    With :math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon`, Tweedie's formula gives
    :math:`\nabla\log p_t(x_t)=(\bar\alpha_t E[x_0\mid x_t]-x_t)/\bar\beta_t^2`, and
    :math:`E[x_0\mid x_t]=\hat x_0(x_t/\bar\alpha_t,\bar\beta_t/\bar\alpha_t)`. Returns
    ``score(x, t)`` for ``x``: ``(n, C, H, W)`` and a float time ``t`` of the SDE.
    """
    from .sde import SDE


    if not isinstance(model, ScoreNet):
        raise TypeError(f"model must be a ScoreNet, got {type(model).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a companion.diffusion.sde.SDE, got {type(sde).__name__}")


    @torch.no_grad()
    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        x = check_batch("x", x, min_ndim=2, allow_empty=True)
        tt = torch.tensor(sde._scalar_time("t", t), dtype=torch.float64)  # one time in [t_min, t_max]
        a, b = sde.alpha_bar(tt).item(), sde.beta_bar(tt).item()
        if not b > 0:
            raise ValueError(f"beta_bar(t) must be > 0 (t > 0), got t={t}")
        return (a * model.denoise(x / a, b / a) - x) / b**2


    return mark_kind(score, "sde-score")


def _image_shape(model: ScoreNet) -> tuple[int, int, int] | None:
    net = model.net
    return (net.in_ch, 8, 8) if isinstance(net, UNet) else None


def denoiser_from_score(score_fn: ScoreFn) -> Denoiser:
    r"""Turn a score function ``score_fn(x, sigma)`` into the denoiser
    :math:`\hat x_0=x+\sigma^2 s(x,\sigma)` (Tweedie's formula, equation :eq:`ode-sigma`)."""
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")


    check_kind(score_fn, "score", "score_fn")


    def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)):
            raise TypeError(f"sigma must be a number or a tensor, got {type(sigma).__name__}")
        return x + sigma**2 * score_fn(x, sigma)


    return mark_kind(denoiser, "denoiser")


def score_from_denoiser(denoiser: Denoiser) -> ScoreFn:
    r"""Turn a denoiser into the score :math:`s(x,\sigma)=(\hat x_0(x,\sigma)-x)/\sigma^2` (Tweedie's
    formula), for the solvers of :mod:`companion.diffusion.ode`, which take a score."""
    check_kind(denoiser, "denoiser", "denoiser")


    def score(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)):
            raise TypeError(f"sigma must be a number or a tensor, got {type(sigma).__name__}")
        return (denoiser(x, sigma) - x) / sigma**2


    return mark_kind(score, "score")
