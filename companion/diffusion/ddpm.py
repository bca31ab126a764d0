r"""Chapter 1 — DDPM derived with Bayes' rule: forward marginal, posterior, samplers.

Everything is written in the book's notation (standard deviations, Su's convention):
:math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon` and, per step,
:math:`x_t=\alpha_t x_{t-1}+\beta_t\varepsilon_t` with :math:`\alpha_t^2+\beta_t^2=1`.
Ho et al.'s variances are the squares (see :meth:`~companion.core.schedules.DiscreteSchedule.to_ho`).

**Step indices.** Every function takes a :class:`~companion.core.schedules.DiscreteSchedule` and an
index ``t`` *into that schedule*. On a subsequence ``sched.subsequence(S)`` the index runs
over ``1..S``, and every coefficient is computed from the barred quantities at positions
``t`` and ``t-1`` of the subsequence, :math:`\alpha_t:=\bar\alpha_{\tau_t}/\bar\alpha_{\tau_{t-1}}`
(equation :eq:`ddpm-skip`). The classic bug of plugging the original per-step :math:`\alpha_{\tau_t}`
into a skipped step therefore cannot happen here. A network sees the *original* time label
``sched.timesteps[t]``.

**Models.** A noise-prediction model is any callable ``model(x, t_label) -> eps`` with
``x`` of shape ``(n, ...)`` and ``t_label`` a Python ``int`` (the original step index);
:class:`companion.core.nets.TimeMLP` and :class:`companion.core.nets.UNet` qualify, and
:func:`exact_eps_model` turns a :class:`~companion.core.gmm.GaussianMixture` into the exact one.

**Randomness.** Each stochastic step draws ``torch.randn(x.shape, generator=generator,
dtype=x.dtype, device=x.device)`` exactly once, and only if its standard deviation is
positive; pass ``noise=`` to supply that draw yourself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.schedules import DiscreteSchedule
from ..core.utils import (
    MAX_STEPS,
    append_dims,
    check_batch,
    check_int,
    check_kind,
    check_positive,
    check_tensor,
    make_generator,
    mark_kind,
    state_dtype,
)

__all__ = [
    "q_sample",
    "posterior",
    "x0_from_eps",
    "eps_from_x0",
    "eps_loss",
    "ddim_sigma",
    "ddpm_step",
    "ddim_step",
    "reverse_gamma",
    "reverse_variance",
    "analytic_x0_var",
    "analytic_dpm_variances",
    "exact_eps_model",
    "sample",
    "slerp",
    "vp_eps_sigma",
    "ddim_ode_solve",
    "ddim_gaussian_variance",
    "analytic_ddim_variances",
    "sample_ddim_variance",
]

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]


# ============================================================================ validation
def _check_schedule(schedule) -> DiscreteSchedule:
    if not isinstance(schedule, DiscreteSchedule):
        raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
    return schedule


def _check_same(name: str, y, x: torch.Tensor, xname: str) -> torch.Tensor:
    y = check_tensor(name, y)
    if y.shape != x.shape:
        raise ValueError(f"{name} must have the shape of {xname} {tuple(x.shape)}, got {tuple(y.shape)}")
    return y


def _coef(schedule: DiscreteSchedule, values: torch.Tensor, t, like: torch.Tensor, *, lo: int) -> torch.Tensor:
    """``values[t]`` as a tensor broadcastable against ``like`` (dtype/device of ``like``).

    ``t`` is an int or an integer tensor of shape ``(n,)`` with ``n = like.shape[0]``;
    every entry must lie in ``[lo, T]``.
    """
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"t must be an integer step index (int or integer tensor), got dtype {t.dtype}")
        if t.ndim == 0:
            t = int(t.item())
        else:
            if t.shape != (like.shape[0],):
                raise ValueError(f"t as a tensor must have shape ({like.shape[0]},), got {tuple(t.shape)}")
            if t.numel() and (t.min() < lo or t.max() > schedule.T):
                raise ValueError(f"t must lie in [{lo}, {schedule.T}], got values in [{t.min().item()}, {t.max().item()}]")
            v = values.to(like.device)[t.to(like.device)]
            return append_dims(v, like.ndim).to(like.dtype)
    t = check_int("t", t)
    if not lo <= t <= schedule.T:
        raise ValueError(f"t must be a step index in [{lo}, {schedule.T}], got {t}")
    return values[t].to(dtype=like.dtype, device=like.device)


def _step_index(schedule: DiscreteSchedule, t) -> int:
    if isinstance(t, torch.Tensor) and t.numel() == 1 and not t.is_floating_point():
        t = int(t.item())
    return schedule.check_step(t)


def _draw(std: float, x: torch.Tensor, generator, noise) -> torch.Tensor | None:
    """The step's standard-normal draw (``None`` when ``std == 0``)."""
    if std <= 0:
        return None
    if noise is not None:
        return _check_same("noise", noise, x, "x_t")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (the global one), got {type(generator).__name__}")
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


# ====================================================================== forward process
def q_sample(schedule: DiscreteSchedule, x0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""Draw from the forward marginal :math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon` (equation :eq:`ddpm-marginal`).

    Args:
        schedule: the (sub)schedule.
        x0: clean data ``(n, ...)``.
        t: step index in ``[0, T]`` (int) or an integer tensor ``(n,)`` (one per sample).
        noise: the standard normal :math:`\varepsilon`, same shape as ``x0``.

    Returns:
        ``x_t`` with the shape, dtype and device of ``x0``.
    """
    schedule = _check_schedule(schedule)
    x0 = check_batch("x0", x0, allow_empty=True)
    noise = _check_same("noise", noise, x0, "x0")
    a = _coef(schedule, schedule.alpha_bar, t, x0, lo=0)
    b = _coef(schedule, schedule.beta_bar, t, x0, lo=0)
    return a * x0 + b * noise


def posterior(schedule: DiscreteSchedule, t: int, x_t: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Bayes posterior :math:`p(x_{t-1}\mid x_t,x_0)=\mathcal N(\tilde\mu,\tilde\sigma_t^2 I)` (equation :eq:`ddpm-posterior`).

    :math:`\tilde\mu=\frac{\alpha_t\bar\beta_{t-1}^2}{\bar\beta_t^2}x_t+\frac{\bar\alpha_{t-1}\beta_t^2}{\bar\beta_t^2}x_0`,
    :math:`\tilde\sigma_t^2=\frac{\bar\beta_{t-1}^2\beta_t^2}{\bar\beta_t^2}` (Ho et al.'s :math:`\tilde\beta_t`).

    Args:
        schedule: the (sub)schedule; ``t`` is an index ``1..T`` into it.
        x_t, x0: tensors of the same shape ``(n, ...)``.

    Returns:
        ``(mean, variance)``: mean of the shape of ``x_t``; variance a 0-d tensor.
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    x_t = check_batch("x_t", x_t, allow_empty=True)
    x0 = _check_same("x0", x0, x_t, "x_t")
    ab, bb, a, b = schedule.alpha_bar, schedule.beta_bar, schedule.alpha, schedule.beta
    kappa = (a[t] * bb[t - 1] ** 2 / bb[t] ** 2).item()
    lam = (ab[t - 1] * b[t] ** 2 / bb[t] ** 2).item()
    var = (bb[t - 1] ** 2 * b[t] ** 2 / bb[t] ** 2).to(dtype=x_t.dtype, device=x_t.device)
    return kappa * x_t + lam * x0, var


def x0_from_eps(schedule: DiscreteSchedule, t, x_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat x_0=(x_t-\bar\beta_t\epsilon)/\bar\alpha_t` (equation :eq:`ddpm-x0-eps`); ``t`` int or ``(n,)``, ``t >= 1``."""
    schedule = _check_schedule(schedule)
    x_t = check_batch("x_t", x_t, allow_empty=True)
    eps = _check_same("eps", eps, x_t, "x_t")
    a = _coef(schedule, schedule.alpha_bar, t, x_t, lo=1)
    b = _coef(schedule, schedule.beta_bar, t, x_t, lo=1)
    return (x_t - b * eps) / a


def eps_from_x0(schedule: DiscreteSchedule, t, x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`\epsilon=(x_t-\bar\alpha_t x_0)/\bar\beta_t`, the inverse of :func:`x0_from_eps` (equation :eq:`ddpm-x0-eps`)."""
    schedule = _check_schedule(schedule)
    x_t = check_batch("x_t", x_t, allow_empty=True)
    x0 = _check_same("x0", x0, x_t, "x_t")
    a = _coef(schedule, schedule.alpha_bar, t, x_t, lo=1)
    b = _coef(schedule, schedule.beta_bar, t, x_t, lo=1)
    return (x_t - a * x0) / b


def eps_loss(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # labels (n,): one step per sample
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    generator: torch.Generator,
    *,
    weighting: str = "simple",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Denoising loss in the ε parametrisation (equation :eq:`ddpm-loss`).

    Draws :math:`t\sim\mathcal U\{1..T\}` and :math:`\varepsilon\sim\mathcal N(0,I)` from
    ``generator`` (in that order), forms :math:`x_t` and returns
    :math:`w_t\,\|\varepsilon-\epsilon_\theta(x_t,t)\|^2/D` with ``D`` the number of
    coordinates per sample. ``weighting='simple'`` is :math:`w_t=1` (Ho's :math:`L_{\rm simple}`);
    ``'x0'`` is :math:`w_t=\bar\beta_t^2/\bar\alpha_t^2`, which makes the loss *equal* to
    :math:`\|x_0-\hat x_0\|^2/D` sample by sample (equation :eq:`ddpm-loss-weight`).

    The signature ``(model, schedule, batch, generator)`` plugs into :func:`companion.core.train.fit`
    as ``lambda m, b, g: eps_loss(m, sched, b, g)``. ``reduction='none'`` returns ``(n,)``.
    """
    schedule = _check_schedule(schedule)
    x0 = check_batch("x0", x0)
    if weighting not in ("simple", "x0"):
        raise ValueError(f"weighting must be 'simple' or 'x0', got {weighting!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (the global one), got {type(generator).__name__}")
    n = x0.shape[0]
    dev = x0.device if generator is None else generator.device
    t = torch.randint(1, schedule.T + 1, (n,), generator=generator, device=dev)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
    t = t.to(x0.device)
    x_t = q_sample(schedule, x0, t, noise)
    labels = schedule.timesteps.to(x0.device)[t]
    pred = model(x_t, labels)
    if not isinstance(pred, torch.Tensor) or pred.shape != x0.shape:
        raise ValueError(f"model must return a tensor of the shape of x0 {tuple(x0.shape)}")
    if not torch.isfinite(pred).all():
        raise ValueError("model returned NaN or infinite values")
    per = ((noise - pred) ** 2).reshape(n, -1).mean(1)
    if weighting == "x0":
        per = per * (schedule.sigma.to(device=x0.device, dtype=x0.dtype)[t] ** 2)
    return per.mean() if reduction == "mean" else per


# ====================================================================== reverse steps
def ddim_sigma(schedule: DiscreteSchedule, t: int, eta: float) -> float:
    r"""DDIM's step std :math:`\sigma^{\rm DDIM}_t(\eta)=\eta\,\bar\beta_{t-1}\beta_t/\bar\beta_t` on this (sub)schedule (equation :eq:`ddim-eta`).

    (The book keeps the bare :math:`\sigma_t` for the noise-to-signal ratio :math:`\bar\beta_t/\bar\alpha_t`;
    the keyword ``sigma`` of the DDIM functions is :math:`\sigma^{\rm DDIM}_t`.)

    ``eta = 1`` is DDPM's posterior standard deviation, ``eta = 0`` the deterministic DDIM.
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    eta = check_positive("eta", eta, allow_zero=True)
    return eta * schedule.posterior_std()[t].item()


def ddpm_step(
    schedule: DiscreteSchedule,
    t: int,
    x_t: torch.Tensor,
    eps: torch.Tensor,
    *,
    variance: str | float = "posterior",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One ancestral DDPM step :math:`x_t\to x_{t-1}` (equation :eq:`ddpm-step`).

    The posterior mean with :math:`x_0` replaced by :math:`\hat x_0=(x_t-\bar\beta_t\epsilon)/\bar\alpha_t`,
    i.e. :math:`\frac1{\alpha_t}\big(x_t-\frac{\beta_t^2}{\bar\beta_t}\epsilon\big)`, plus Gaussian noise.

    Args:
        schedule: the (sub)schedule; ``t`` an index ``1..T`` into it.
        x_t: current iterate ``(n, ...)``; eps: the predicted noise, same shape.
        variance: ``'posterior'`` (:math:`\bar\beta_{t-1}^2\beta_t^2/\bar\beta_t^2`, exact for a
            point mass), ``'forward'`` (:math:`\beta_t^2`, exact for standard normal data), or
            a number :math:`\ge 0` (e.g. from :func:`analytic_dpm_variances`). Eq. :eq:`ddpm-limits`.
        generator, noise: randomness (see the module docstring).

    Returns:
        ``(x_prev, x0_hat)``, both of the shape of ``x_t``.
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    x_t = check_batch("x_t", x_t, allow_empty=True)
    eps = _check_same("eps", eps, x_t, "x_t")
    if isinstance(variance, str):
        if variance == "posterior":
            var = schedule.posterior_std()[t].item() ** 2
        elif variance == "forward":
            var = schedule.beta[t].item() ** 2
        else:
            raise ValueError(f"variance must be 'posterior', 'forward' or a number >= 0, got {variance!r}")
    else:
        var = check_positive("variance", variance, allow_zero=True)
    x0_hat = x0_from_eps(schedule, t, x_t, eps)
    mean, _ = posterior(schedule, t, x_t, x0_hat)
    z = _draw(var**0.5, x_t, generator, noise)
    x_prev = mean if z is None else mean + var**0.5 * z
    return x_prev, x0_hat


def ddim_step(
    schedule: DiscreteSchedule,
    t: int,
    x_t: torch.Tensor,
    eps: torch.Tensor,
    *,
    eta: float = 0.0,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One step of the DDIM family :math:`x_{t-1}=\bar\alpha_{t-1}\hat x_0+\sqrt{\bar\beta_{t-1}^2-s^2}\,\epsilon+s\,z`, :math:`s=\sigma^{\rm DDIM}_t` (equation :eq:`ddim-step`).

    The kernel :math:`\mathcal N(\kappa_tx_t+\lambda_tx_0,s^2)` keeps
    :math:`p(x_{t-1}\mid x_0)` for every :math:`0\le s\le\bar\beta_{t-1}` (equation :eq:`ddim-constraints`).

    Args:
        schedule: the (sub)schedule; ``t`` an index ``1..T`` into it.
        x_t, eps: ``(n, ...)`` iterate and predicted noise.
        eta: :math:`s=\eta\,\bar\beta_{t-1}\beta_t/\bar\beta_t` (``eta=1`` is DDPM, ``0`` DDIM);
            ignored when ``sigma`` is given.
        sigma: the step standard deviation :math:`s=\sigma^{\rm DDIM}_t` itself, in ``[0, beta_bar[t-1]]``.
        generator, noise: randomness (see the module docstring).

    Returns:
        ``(x_prev, x0_hat)``.
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    x_t = check_batch("x_t", x_t, allow_empty=True)
    eps = _check_same("eps", eps, x_t, "x_t")
    if sigma is None:
        sigma = ddim_sigma(schedule, t, eta)
    else:
        sigma = check_positive("sigma", sigma, allow_zero=True)
    bb_prev = schedule.beta_bar[t - 1].item()
    if sigma > bb_prev * (1 + 1e-12):
        raise ValueError(f"sigma must be <= beta_bar[t-1] = {bb_prev:.6g} at t = {t}, got {sigma:.6g}")
    direction = max(bb_prev**2 - sigma**2, 0.0) ** 0.5
    x0_hat = x0_from_eps(schedule, t, x_t, eps)
    x_prev = schedule.alpha_bar[t - 1].item() * x0_hat + direction * eps
    z = _draw(sigma, x_t, generator, noise)
    if z is not None:
        x_prev = x_prev + sigma * z
    return x_prev, x0_hat


# ================================================================ optimal reverse variance
def reverse_gamma(schedule: DiscreteSchedule, t: int, sigma: float) -> float:
    r""":math:`\gamma_t=\bar\alpha_{t-1}-\bar\alpha_t\sqrt{\bar\beta_{t-1}^2-s^2}/\bar\beta_t`, the
    weight of :math:`x_0` in the mean of the DDIM kernel with step std :math:`s=\sigma^{\rm DDIM}_t`
    (equation :eq:`ddpm-reverse-var`).

    At DDPM's :math:`s=\tilde\sigma_t` it is :math:`\bar\alpha_{t-1}\beta_t^2/\bar\beta_t^2`."""
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    bb_prev = schedule.beta_bar[t - 1].item()
    if sigma > bb_prev * (1 + 1e-12):
        raise ValueError(f"sigma must be <= beta_bar[t-1] = {bb_prev:.6g} at t = {t}, got {sigma:.6g}")
    ab, bb = schedule.alpha_bar, schedule.beta_bar
    return ab[t - 1].item() - ab[t].item() * max(bb_prev**2 - sigma**2, 0.0) ** 0.5 / bb[t].item()


def reverse_variance(schedule: DiscreteSchedule, t: int, x0_var, sigma: float | None = None):
    r"""Variance of the exact reverse kernel, :math:`s^2+\gamma_t^2\,\mathrm{Var}[x_0\mid x_t]` (equation :eq:`ddpm-reverse-var`).

    By the law of total variance applied to :math:`p(x_{t-1}\mid x_t)=E_{x_0\mid x_t}[q_s(x_{t-1}\mid x_t,x_0)]`
    with :math:`s=\sigma^{\rm DDIM}_t`.
    ``x0_var``: a number or tensor (per point / per coordinate) of :math:`\mathrm{Var}[x_0\mid x_t]`;
    ``sigma`` defaults to DDPM's posterior standard deviation. Returns the same type as ``x0_var``.
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    if sigma is None:
        sigma = schedule.posterior_std()[t].item()
    g = reverse_gamma(schedule, t, sigma)
    if isinstance(x0_var, torch.Tensor):
        x0_var = check_tensor("x0_var", x0_var)
        if (x0_var < 0).any():
            raise ValueError("x0_var must be >= 0")
    else:
        x0_var = check_positive("x0_var", x0_var, allow_zero=True)
    return sigma**2 + g**2 * x0_var


def analytic_x0_var(schedule: DiscreteSchedule, t: int, eps_sq_mean: float) -> float:
    r"""Analytic-DPM's isotropic posterior variance :math:`v_t=\sigma_t^2\big(1-\frac1D E\|\epsilon(x_t)\|^2\big)`, :math:`\sigma_t=\bar\beta_t/\bar\alpha_t` (equation :eq:`ddpm-analytic`).

    ``eps_sq_mean`` is :math:`\frac1D E\|\epsilon_\theta(x_t,t)\|^2`. With the exact
    :math:`\epsilon^*` this is the average posterior variance :math:`\frac1D E\,\mathrm{tr\,Cov}(x_0\mid x_t)`.
    Clipped at 0 (a learned ε can overshoot 1).
    """
    schedule = _check_schedule(schedule)
    t = _step_index(schedule, t)
    e2 = check_positive("eps_sq_mean", eps_sq_mean, allow_zero=True)
    return max(schedule.sigma[t].item() ** 2 * (1.0 - e2), 0.0)


@torch.no_grad()
def _eps_sq_per_step(model, schedule: DiscreteSchedule, x0: torch.Tensor, g: torch.Generator | None):
    """For t = 1..T: draw x_t from x0 and yield ``(t, mean squared model output per coordinate)``."""
    for t in range(1, schedule.T + 1):
        noise = torch.randn(x0.shape, generator=g, dtype=x0.dtype, device=x0.device)
        x_t = q_sample(schedule, x0, t, noise)
        e = model(x_t, int(schedule.timesteps[t]))
        if not isinstance(e, torch.Tensor) or e.shape != x0.shape:
            raise ValueError(f"model must return a tensor of the shape of x0 {tuple(x0.shape)}")
        if not torch.isfinite(e).all():
            raise ValueError(f"model returned NaN or infinite values at step {t}")
        yield t, (e.double() ** 2).reshape(x0.shape[0], -1).mean().item()


def analytic_dpm_variances(
    model: EpsModel,
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    generator: torch.Generator | int,
    *,
    x0_var_max: float | None = None,
) -> torch.Tensor:
    r"""Per-step reverse variances :math:`\tilde\sigma_t^2+\gamma_t^2v_t` of Analytic-DPM (equation :eq:`ddpm-analytic`),
    for DDPM's mean (pass them as ``sample(..., variance=...)``).

    :math:`\frac1D E\|\epsilon_\theta\|^2` is estimated by Monte Carlo on the data ``x0``
    ``(n, ...)`` noised to each step of ``schedule``. ``x0_var_max`` optionally clips
    :math:`v_t` (e.g. 1 for data in [-1, 1]). Returns a float64 tensor ``(T+1,)``
    (entry 0 unused) for ``sample(..., variance=...)``.
    """
    schedule = _check_schedule(schedule)
    x0 = check_batch("x0", x0)
    g = make_generator(generator, x0.device)
    out = torch.zeros(schedule.T + 1, dtype=torch.float64)
    for t, e2 in _eps_sq_per_step(model, schedule, x0, g):
        v = analytic_x0_var(schedule, t, e2)
        if x0_var_max is not None:
            v = min(v, check_positive("x0_var_max", x0_var_max))
        out[t] = reverse_variance(schedule, t, v)
    return out


def exact_eps_model(mixture, schedule: DiscreteSchedule) -> EpsModel:
    r"""The exact noise predictor :math:`\epsilon^*(x_t)=-\bar\beta_t\nabla\log p_t(x_t)` of a
    :class:`~companion.core.gmm.GaussianMixture`, as a model ``(x, t_label) -> eps``.

    ``schedule`` is the *full* schedule whose indices are the time labels (a subsequence of it
    keeps those labels in ``timesteps``).
    """
    schedule = _check_schedule(schedule)
    if not hasattr(mixture, "eps_prediction"):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    ab, bb = schedule.alpha_bar, schedule.beta_bar

    def eps(x: torch.Tensor, t_label: int) -> torch.Tensor:
        if isinstance(t_label, torch.Tensor) and t_label.numel() == 1 and not t_label.is_floating_point():
            t_label = int(t_label.item())
        t = check_int("t_label", t_label, minimum=1)
        if t > schedule.T:
            raise ValueError(f"t_label must be <= {schedule.T}, got {t}")
        return mixture.eps_prediction(x, ab[t].item(), bb[t].item())

    return mark_kind(eps, "eps")


# ======================================================================== sampling loop
@torch.no_grad()
def sample(
    model: EpsModel,
    schedule: DiscreteSchedule,
    x_T: torch.Tensor,
    *,
    eta: float = 1.0,
    variance: str | torch.Tensor | None = None,
    generator: torch.Generator | int | None = None,
    return_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
):
    r"""Run the reverse chain from :math:`x_T` (index ``T`` of ``schedule``) down to index 0 (equation :eq:`ddim-step`).

    Args:
        model: ``(x, t_label) -> eps``; called once per step with the original time label.
        schedule: a full schedule or a subsequence (``sched.subsequence(S)``): S steps = S NFE.
        x_T: the starting point ``(n, ...)``; the loop runs in its dtype and device.
        eta: DDIM family :math:`\sigma^{\rm DDIM}_t=\eta\,\bar\beta_{t-1}\beta_t/\bar\beta_t` (``1`` = DDPM,
            ``0`` = deterministic DDIM), used when ``variance`` is ``None``.
        variance: instead of ``eta``, DDPM's mean with ``'posterior'``, ``'forward'`` or a
            ``(T+1,)`` tensor of per-step variances (see :func:`ddpm_step`).
        generator: a ``torch.Generator`` or an int seed (needed unless the chain is deterministic).
        return_x0: also return the stacked predictions :math:`\hat x_0`, shape ``(T, n, ...)``,
            in the order of the loop (step ``T`` first).
        callback: called after each step with ``{'i', 't', 't_label', 'x', 'x_prev', 'x0_hat'}``.
        progress: show a ``tqdm`` bar.

    Returns:
        ``x_0`` (shape of ``x_T``), or ``(x_0, x0_hats)`` if ``return_x0``.
    """
    schedule = _check_schedule(schedule)
    x = check_batch("x_T", x_T, allow_empty=True)
    check_kind(model, "eps", "model")
    eta = check_positive("eta", eta, allow_zero=True)
    if isinstance(variance, torch.Tensor):
        variance = check_tensor("variance", variance, ndim=1)
        if variance.shape != (schedule.T + 1,):
            raise ValueError(f"variance as a tensor must have shape ({schedule.T + 1},), got {tuple(variance.shape)}")
    elif variance is not None and variance not in ("posterior", "forward"):
        raise ValueError(f"variance must be None, 'posterior', 'forward' or a tensor, got {variance!r}")
    g = make_generator(generator, x.device) if generator is not None else None
    x0s = []
    steps = range(schedule.T, 0, -1)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="sampling")
    for i, t in enumerate(steps):
        label = int(schedule.timesteps[t])
        eps = state_dtype(model(x, label), x)
        if variance is None:
            x_prev, x0_hat = ddim_step(schedule, t, x, eps, eta=eta, generator=g)
        else:
            v = variance[t].item() if isinstance(variance, torch.Tensor) else variance
            x_prev, x0_hat = ddpm_step(schedule, t, x, eps, variance=v, generator=g)
        if callback is not None:
            callback({"i": i, "t": t, "t_label": label, "x": x, "x_prev": x_prev, "x0_hat": x0_hat})
        if return_x0:
            x0s.append(x0_hat)
        x = x_prev
    if return_x0:
        return x, torch.stack(x0s)
    return x


def slerp(x0: torch.Tensor, x1: torch.Tensor, w: float | torch.Tensor) -> torch.Tensor:
    r"""Spherical interpolation between two starting noises, the path along which DDIM's
    deterministic map turns one sample into another (chapter 1, section 8):

    .. math:: \mathrm{slerp}(x_0,x_1;w)=\frac{\sin((1-w)\theta)}{\sin\theta}x_0+\frac{\sin(w\theta)}{\sin\theta}x_1,
       \qquad \cos\theta=\frac{\langle x_0,x_1\rangle}{\|x_0\|\,\|x_1\|},

    per row. In high dimension :math:`\|x\|` of a standard normal concentrates at about
    :math:`\sqrt d` and two draws are nearly orthogonal, so the path keeps every point at a
    typical norm, where a straight line would pass through atypically short vectors.
    ``x0``, ``x1``: ``(n, ...)`` of the same shape; ``w``: a number in ``[0, 1]`` or a tensor
    ``(n,)``. Returns ``(n, ...)``.
    """
    x0 = check_batch("x0", x0, allow_empty=True)
    x1 = check_batch("x1", x1, allow_empty=True)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    w = torch.as_tensor(w, dtype=x0.dtype, device=x0.device)
    if w.ndim > 1 or (w.ndim == 1 and w.shape[0] != x0.shape[0]) or not torch.isfinite(w).all() \
            or (w < 0).any() or (w > 1).any():
        raise ValueError(f"w must be in [0, 1], a number or one value per row ({x0.shape[0]},)")
    a, b = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("x0 and x1 must be non-zero in every row")
    theta = torch.arccos(((a * b).sum(1) / (na * nb)).clamp(-1.0, 1.0))
    w = w.expand(a.shape[0])
    small = theta < 1e-6  # (anti)parallel rows: fall back to the straight line
    st = torch.where(small, torch.ones_like(theta), torch.sin(theta))
    c0 = torch.where(small, 1 - w, torch.sin((1 - w) * theta) / st)
    c1 = torch.where(small, w, torch.sin(w * theta) / st)
    return (c0[:, None] * a + c1[:, None] * b).reshape(x0.shape)



# ============================================================ continuous limit, diversity, Analytic-DDIM
def vp_eps_sigma(mixture) -> Callable[[torch.Tensor, float], torch.Tensor]:
    r"""The exact noise predictor of a :class:`~companion.core.gmm.GaussianMixture` as a function of the
    noise-to-signal ratio :math:`\sigma=\bar\beta/\bar\alpha` instead of a step index (equation :eq:`ddim-ode`).

    For a variance-preserving chain :math:`\bar\alpha^2+\bar\beta^2=1`, so
    :math:`\bar\alpha=(1+\sigma^2)^{-1/2}` and :math:`\bar\beta=\sigma\bar\alpha`. Returns
    ``eps(x, sigma)`` with ``x`` of shape ``(n, d)`` (the chain's variable :math:`x_t`, not
    :math:`x_t/\bar\alpha_t`) and ``sigma >= 0`` a float.
    """
    if not hasattr(mixture, "eps_prediction"):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")

    def eps(x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = check_positive("sigma", sigma, allow_zero=True)
        ab = (1.0 + sigma**2) ** -0.5
        if sigma == 0:
            return torch.zeros_like(check_batch("x", x, allow_empty=True))
        return mixture.eps_prediction(x, ab, sigma * ab)

    return eps


def ddim_ode_solve(
    eps_fn: Callable[[torch.Tensor, float], torch.Tensor],
    x_start: torch.Tensor,
    sigma_start: float,
    sigma_end: float = 0.0,
    *,
    steps: int = 2000,
    rho: float = 3.0,
) -> torch.Tensor:
    r"""Solve DDIM's continuous limit :math:`\frac{d}{d\sigma}\frac{x}{\bar\alpha}=\epsilon(x,\sigma)` (equation :eq:`ddim-ode`)
    from ``sigma_start`` to ``sigma_end`` by classical Runge–Kutta (fourth order), as a reference for DDIM.

    The variable is :math:`y=x/\bar\alpha` and the time is :math:`\sigma=\bar\beta/\bar\alpha`; for a
    variance-preserving chain :math:`\bar\alpha=(1+\sigma^2)^{-1/2}`. The grid is uniform in
    :math:`\sigma^{1/\rho}`, which packs steps where :math:`\sigma` is small and the predictor varies fastest.

    Args:
        eps_fn: ``(x, sigma) -> eps`` in the chain's variable ``x`` (e.g. :func:`vp_eps_sigma`).
        x_start: ``(n, ...)`` at ``sigma_start``; sigma_start > sigma_end >= 0.
        steps: number of RK4 steps (4 evaluations each); rho: grid warping, >= 1.

    Returns:
        :math:`x` at ``sigma_end`` (shape of ``x_start``).
    """
    if not callable(eps_fn):
        raise TypeError("eps_fn must be callable (x, sigma) -> eps")
    x = check_batch("x_start", x_start, allow_empty=True)
    s0 = check_positive("sigma_start", sigma_start)
    s1 = check_positive("sigma_end", sigma_end, allow_zero=True)
    if not s0 > s1:
        raise ValueError(f"sigma_start must be > sigma_end (the ODE runs towards the data), got {s0} and {s1}")
    steps = check_int("steps", steps, minimum=1, maximum=MAX_STEPS)
    rho = check_positive("rho", rho)
    if rho < 1:
        raise ValueError(f"rho must be >= 1, got {rho}")
    u = torch.linspace(s0 ** (1 / rho), s1 ** (1 / rho), steps + 1, dtype=torch.float64) ** rho
    ab = lambda s: (1.0 + s**2) ** -0.5

    def f(y: torch.Tensor, s: float) -> torch.Tensor:
        e = eps_fn(ab(s) * y, s)
        if not isinstance(e, torch.Tensor) or e.shape != y.shape:
            raise ValueError(f"eps_fn must return a tensor of the shape of x {tuple(y.shape)}")
        return e

    y = x / ab(s0)
    for a, b in zip(u[:-1].tolist(), u[1:].tolist(), strict=True):
        h = b - a
        k1 = f(y, a)
        k2 = f(y + 0.5 * h * k1, a + 0.5 * h)
        k3 = f(y + 0.5 * h * k2, a + 0.5 * h)
        k4 = f(y + h * k3, b)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return ab(s1) * y


def ddim_gaussian_variance(schedule: DiscreteSchedule, eta: float, data_var: float) -> float:
    r"""Variance per coordinate of DDIM(:math:`\eta`) samples for Gaussian data :math:`\mathcal N(m,v)`,
    with the exact noise predictor and the exact start :math:`p_T`, in closed form (equation :eq:`ddim-diversity`).

    For Gaussian data the posterior mean is affine, :math:`\hat x_0=m+k_t(x_t-\bar\alpha_tm)` with
    :math:`k_t=\bar\alpha_tv/(\bar\alpha_t^2v+\bar\beta_t^2)`, so every step is
    :math:`x_{t-1}-\bar\alpha_{t-1}m=A_t(x_t-\bar\alpha_tm)+s\,z` and the variance obeys
    :math:`V_{t-1}=A_t^2V_t+s^2`, with
    :math:`A_t=\bar\alpha_{t-1}k_t+\sqrt{\bar\beta_{t-1}^2-s^2}\,(1-\bar\alpha_tk_t)/\bar\beta_t` and
    :math:`s=\sigma^{\rm DDIM}_t(\eta)`. The exact law has :math:`V_0=v`; the shortfall is the
    diversity the mean-only sampler loses. ``schedule``: a full schedule or a subsequence.
    """
    schedule = _check_schedule(schedule)
    eta = check_positive("eta", eta, allow_zero=True)
    v = check_positive("data_var", data_var)
    ab, bb = schedule.alpha_bar.double(), schedule.beta_bar.double()
    V = ab[-1].item() ** 2 * v + bb[-1].item() ** 2
    for t in range(schedule.T, 0, -1):
        s = ddim_sigma(schedule, t, eta)
        a_t, b_t, a_p, b_p = ab[t].item(), bb[t].item(), ab[t - 1].item(), bb[t - 1].item()
        k = a_t * v / (a_t**2 * v + b_t**2)
        A = a_p * k + max(b_p**2 - s**2, 0.0) ** 0.5 * (1 - a_t * k) / b_t
        V = A**2 * V + s**2
    return V


@torch.no_grad()
def analytic_ddim_variances(
    model: EpsModel,
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    generator: torch.Generator | int,
    *,
    eta: float,
    x0_var_max: float | None = None,
) -> torch.Tensor:
    r"""Optimal per-step variances :math:`s^2+\gamma_t(s)^2v_t` of the DDIM(:math:`\eta`) kernel, :math:`s=\sigma^{\rm DDIM}_t(\eta)`
    (Analytic-DPM for :math:`\eta<1`, equation :eq:`ddim-analytic`).

    The mean stays DDIM's; only the noise grows, by the part :math:`\gamma_t(s)^2v_t` that a point
    prediction of :math:`x_0` leaves out. :math:`v_t` is estimated as in
    :func:`analytic_dpm_variances` (equation :eq:`ddpm-analytic`). ``eta=1`` reproduces
    :func:`analytic_dpm_variances`. Returns a float64 ``(T+1,)`` tensor (entry 0 unused) for
    :func:`sample_ddim_variance`.
    """
    schedule = _check_schedule(schedule)
    x0 = check_batch("x0", x0)
    eta = check_positive("eta", eta, allow_zero=True)
    if eta > 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    g = make_generator(generator, x0.device)
    out = torch.zeros(schedule.T + 1, dtype=torch.float64)
    for t, e2 in _eps_sq_per_step(model, schedule, x0, g):
        v = analytic_x0_var(schedule, t, e2)
        if x0_var_max is not None:
            v = min(v, check_positive("x0_var_max", x0_var_max))
        out[t] = reverse_variance(schedule, t, v, sigma=ddim_sigma(schedule, t, eta))
    return out


@torch.no_grad()
def sample_ddim_variance(
    model: EpsModel,
    schedule: DiscreteSchedule,
    x_T: torch.Tensor,
    variances: torch.Tensor,
    *,
    eta: float,
    generator: torch.Generator | int,
) -> torch.Tensor:
    r"""DDIM(:math:`\eta`)'s mean with a chosen total variance per step (equation :eq:`ddim-analytic`):
    :math:`x_{t-1}=\bar\alpha_{t-1}\hat x_0+\sqrt{\bar\beta_{t-1}^2-s^2}\,\epsilon+\sqrt{V_t}\,z`.

    ``variances``: ``(T+1,)`` total variances :math:`V_t\ge s^2` (e.g. from :func:`analytic_ddim_variances`);
    ``x_T``: ``(n, ...)``. Returns :math:`x_0`.
    """
    schedule = _check_schedule(schedule)
    x = check_batch("x_T", x_T, allow_empty=True)
    check_kind(model, "eps", "model")
    variances = check_tensor("variances", variances, ndim=1)
    if variances.shape != (schedule.T + 1,):
        raise ValueError(f"variances must have shape ({schedule.T + 1},), got {tuple(variances.shape)}")
    g = make_generator(generator, x.device)
    for t in range(schedule.T, 0, -1):
        s = ddim_sigma(schedule, t, eta)
        v = variances[t].item()
        if v < s**2 * (1 - 1e-12):
            raise ValueError(f"variances[{t}] = {v:.6g} is below the step's own s^2 = {s**2:.6g}")
        eps = model(x, int(schedule.timesteps[t]))
        mean, _ = ddim_step(schedule, t, x, eps, sigma=s, noise=torch.zeros_like(x))
        z = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
        x = mean + v**0.5 * z
    return x
