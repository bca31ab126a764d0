r"""The learned image denoiser of chapter 5, and the wrappers that give each chapter's sampler its form.

One network is trained, as chapter 5's preconditioned denoiser
:math:`\hat x_0(x,\sigma)=c_{\rm skip}x+c_{\rm out}F(c_{\rm in}x,c_{\rm noise})`
(equation :eq:`ode-precond`, :class:`companion.diffusion.precond.ScoreNet` around a :class:`companion.core.nets.UNet`),
on :math:`x=x_0+\sigma\varepsilon`. Every other parameterisation is a change of variables:

* chapter 3's score is Tweedie's :math:`(\hat x_0-x)/\sigma^2` (``ScoreNet.__call__``);
* chapter 2's score of a VP SDE is :func:`~companion.diffusion.precond.vp_score` (equation :eq:`sde-score-from-denoiser`);
* chapter 5's fast samplers take the denoiser itself (:func:`~companion.diffusion.precond.denoiser_fn`);
* chapter 1's noise predictor for the chain :math:`x_t=\bar\alpha_t x_0+\bar\beta_t\varepsilon` is
  :math:`\hat\varepsilon=(x_t-\bar\alpha_t\hat x_0(x_t/\bar\alpha_t,\bar\beta_t/\bar\alpha_t))/\bar\beta_t`
  (:func:`~companion.diffusion.precond.eps_model`, equation :eq:`ddpm-eps-from-denoiser`).

The full model is trained by ``python -m companion.experiments ch5 digits_denoiser`` and its
weights are committed next to the result file; :func:`load_digits_denoiser` checks that they
match the file's configuration and checksum.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..core.nets import UNet
from ..core.schedules import DiscreteSchedule
from ..core.train import FitResult, fit
from ..core.utils import check_int, seed_generator
from ..diffusion.precond import (  # noqa: F401  (the recipe's views, kept importable here)
    ScoreNet,
    csm_loss,
    denoiser_fn,
    eps_model,
    vp_score,
)
from ..diffusion.samplers import SAMPLERS
from ..store import load_weights

__all__ = [
    "DIGITS_CONFIG",
    "digits_denoiser",
    "train_digits_denoiser",
    "load_digits_denoiser",
    "DIGITS_SAMPLERS",
    "generate",
    "ResidualRestorer",
    "COLD_CONFIG",
    "cold_blur",
    "train_cold_restorer",
    "load_cold_restorer",
]

#: The recipe of the digits denoiser (network, optimiser, noise-level law of the training loss).
DIGITS_CONFIG: dict[str, Any] = dict(
    ch=32, mult=[1, 2], blocks=1, max_freq=16.0, dropout=0.3,
    steps=4000, batch_size=128, lr=3e-3, warmup=100, ema_decay=0.9999, p_mean=-0.8, p_std=1.4,
)


def _config(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(DIGITS_CONFIG)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(DIGITS_CONFIG)}")
    return {**DIGITS_CONFIG, **overrides}


def digits_denoiser(seed: int = 0, **overrides) -> ScoreNet:
    """A fresh (untrained) digits denoiser: ``ScoreNet(UNet(...), sigma_data)`` with
    :math:`\\sigma_d=\\sqrt{m_2}` the root mean square of the training pixels (equation :eq:`ode-precond`). The weights are drawn
    from ``seed`` without touching the caller's random state. ``overrides``: keys of
    :data:`DIGITS_CONFIG` (the network ones matter here)."""
    from ..core.data import digits

    cfg = _config(overrides)
    seed = check_int("seed", seed, minimum=0)
    sigma_data = digits("train")[0].square().mean().sqrt().item()  # sqrt(m2) of equation (ode-precond)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(ch=cfg["ch"], mult=tuple(cfg["mult"]), blocks=cfg["blocks"], max_freq=cfg["max_freq"],
                   dropout=cfg["dropout"])
    return ScoreNet(net, sigma_data=sigma_data)


def train_digits_denoiser(seed: int = 0, *, progress: bool = True, **overrides) -> FitResult:
    """Train :func:`digits_denoiser` on the training digits with the loss of equation
    :eq:`ode-csm` (:func:`companion.diffusion.precond.csm_loss`), Adam with warm-up and cosine decay, and an EMA
    of the weights (``FitResult.ema`` is the model to sample from)."""
    from ..core.data import digits

    cfg = _config(overrides)
    model = digits_denoiser(seed, **{k: v for k, v in overrides.items()})
    x = digits("train")[0]
    return fit(model, lambda m, b, g: csm_loss(cast(ScoreNet, m), b, g, p_mean=cfg["p_mean"], p_std=cfg["p_std"]), x,
               steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed,
               ema_decay=cfg["ema_decay"], warmup=cfg["warmup"], progress=progress, desc="digits denoiser")



#: The samplers :func:`generate` knows: chapter 1's chain over a subsequence of a linear 1000-step
#: schedule (DDPM = η 1, i.e. the posterior variance; DDPM (β) = the forward variance β_t;
#: DDIM = η 0); chapter 2's reverse SDE, predictor–corrector and probability-flow ODE of Song's VP
#: SDE (β from 0.1 to 20, stopped at t = 1e-3); and the σ-samplers of :mod:`companion.diffusion.samplers` over
#: Karras' grid.
DIGITS_SAMPLERS = ("DDPM", "DDPM (β)", "DDIM",
                   "reverse SDE (VP)", "predictor-corrector (VP)", "probability-flow ODE (VP)",
                   *SAMPLERS)


def generate(model: ScoreNet, sampler: str, nfe: int, n: int, seed: int, *,
             sigma_min: float = 2e-3, sigma_max: float = 80.0, shape: tuple[int, ...] = (1, 8, 8),
             lower_order_final: bool | None = None, device: str | torch.device | None = None) -> torch.Tensor:
    """Draw ``n`` images ``(n, *shape)`` from ``model`` with one of :data:`DIGITS_SAMPLERS` at ``nfe``
    network evaluations (Heun: ``nfe // 2`` steps of 2; predictor–corrector: ``nfe // 2`` steps of
    one predictor and one corrector call). The start and the sampler's noise come from ``seed``: the
    same standard-normal start for every sampler and ``n``, scaled to each sampler's prior.
    ``lower_order_final`` is passed to the multistep σ-samplers (``None``: their default).
    ``device`` (default: the model's) is where the chain runs: the start is drawn on the CPU, so it
    is the same on every device, and the sampler's noise comes from a generator on ``device``
    seeded with ``seed`` (on the CPU, the start's own generator goes on)."""
    from ..diffusion import ddpm, ode
    from ..diffusion import samplers as S
    from ..diffusion import sde as sde_mod

    if not isinstance(model, ScoreNet):
        raise TypeError(f"model must be a ScoreNet (e.g. from load_digits_denoiser), got {type(model).__name__}")
    if sampler not in DIGITS_SAMPLERS:
        raise ValueError(f"sampler must be one of {DIGITS_SAMPLERS}, got {sampler!r}")
    if (not isinstance(shape, tuple) or not shape
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)):
        raise ValueError(f"shape must be a non-empty tuple of positive ints (C, H, W), got {shape!r}")
    two_per_step = sampler == "predictor-corrector (VP)" or SAMPLERS.get(sampler, SAMPLERS["Euler"]).calls_per_step == 2
    nfe = check_int("nfe", nfe, minimum=2 if two_per_step else 1, maximum=10_000)
    n = check_int("n", n, minimum=0, maximum=10**6)
    seed = check_int("seed", seed, minimum=0)
    dev = next(model.parameters(), torch.empty(0)).device if device is None else torch.device(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g).to(dev)
    if n == 0:
        return x
    if dev.type != "cpu":
        g = seed_generator(seed, dev)
    with torch.no_grad():
        if sampler in ("DDPM", "DDPM (β)", "DDIM"):
            sched = DiscreteSchedule.linear(1000)
            kind = dict(variance="forward") if sampler == "DDPM (β)" else dict(eta=1.0 if sampler == "DDPM" else 0.0)
            return ddpm.sample(eps_model(model, sched), sched.subsequence(nfe), x, generator=g, **kind)
        if sampler.endswith("(VP)"):
            vp = sde_mod.VPSDE(0.1, 20.0)
            score, x_T = vp_score(model, vp), x * vp.prior_std
            if sampler == "predictor-corrector (VP)":
                return sde_mod.pc_sample(vp, score, x_T, steps=nfe // 2, t_end=1e-3, generator=g)[0]
            nu = 1.0 if sampler == "reverse SDE (VP)" else 0.0
            return sde_mod.reverse_sample(vp, score, x_T, steps=nfe, t_end=1e-3, nu=nu, generator=g)[0]
        spec = S.SAMPLERS[sampler]
        den, x_T = denoiser_fn(model), x * sigma_max
        sig = ode.sigma_grid(nfe // spec.calls_per_step, sigma_min=sigma_min, sigma_max=sigma_max,
                             dtype=torch.float32)
        return spec(den, x_T, sig, generator=g, lower_order_final=lower_order_final)[0]


# ============================================================================ committed weights
def load_digits_denoiser(seed: int = 0) -> ScoreNet:
    """The trained digits denoiser of ``python -m companion.experiments ch5 digits_denoiser``
    (EMA weights, eval mode). Refuses a stale result file or weights whose checksum differs from
    the one the experiment recorded (:func:`companion.store.load_weights`)."""
    state, record = load_weights("ch5", "digits_denoiser", check_int("seed", seed, minimum=0),
                                 expect={"model": DIGITS_CONFIG})
    model = digits_denoiser(seed, **{k: record["config"]["model"][k] for k in ("ch", "mult", "blocks", "max_freq")})
    model.load_state_dict(state)
    return model.eval()


class ResidualRestorer(nn.Module):
    r"""Restorer :math:`\mathcal G(x_t,t)=x_t+F(x_t,t/T)` of chapter 4 for ``(n, C, H, W)`` images,
    with ``F`` a :class:`companion.core.nets.UNet`: it learns only what the corruption removed."""

    def __init__(self, T: int, seed: int = 0, **unet):
        super().__init__()
        self.T = check_int("T", T, minimum=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_int("seed", seed, minimum=0))
            self.net = UNet(**unet)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """``x_t``: ``(n, C, H, W)``; ``t``: a step in ``[0, T]`` (float) or one per image ``(n,)``."""
        if isinstance(t, torch.Tensor):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError("t contains NaN or infinite values")
            if t.numel() and (t.min() < 0 or t.max() > self.T):
                raise ValueError(f"t must lie in [0, T={self.T}]")
            return x_t + self.net(x_t, t.to(x_t.dtype) / self.T)
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise TypeError(f"t must be a number or a tensor, got {type(t).__name__}")
        if not 0 <= t <= self.T:
            raise ValueError(f"t must lie in [0, T={self.T}], got {t}")
        return x_t + self.net(x_t, t / self.T)


#: The recipe of chapter 4's Cold-Diffusion restorer (the blur and its noise, network, optimiser).
COLD_CONFIG: dict[str, Any] = dict(
    T=10, max_width=3.0, noise_std=0.05, boundary="neumann",
    ch=32, mult=[1, 2], blocks=1, max_freq=16.0,
    steps=2000, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.999, p=1,
)


def _cold_config(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(COLD_CONFIG)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(COLD_CONFIG)}")
    return {**COLD_CONFIG, **overrides}


def cold_blur(**overrides):
    """Chapter 4's digits corruption: :class:`companion.diffusion.unified.HeatBlur` on 8×8 images, widths
    growing linearly to ``max_width`` over ``T`` steps, plus noise of std ``noise_std``."""
    from ..diffusion.unified import HeatBlur

    cfg = _cold_config(overrides)
    return HeatBlur.linear((8, 8), cfg["T"], cfg["max_width"], noise_std=cfg["noise_std"], boundary=cfg["boundary"])


def train_cold_restorer(seed: int = 0, *, progress: bool = True, **overrides) -> FitResult:
    """Train a :class:`ResidualRestorer` for :func:`cold_blur` with chapter 4's restoration loss
    (:func:`companion.diffusion.unified.x0_loss`, ``p = 1`` as in Cold Diffusion) and an EMA of the weights."""
    from ..core.data import digits
    from ..diffusion.unified import x0_loss

    cfg = _cold_config(overrides)
    blur = cold_blur(**overrides)
    model = ResidualRestorer(cfg["T"], seed, ch=cfg["ch"], mult=tuple(cfg["mult"]), blocks=cfg["blocks"],
                             max_freq=cfg["max_freq"])
    return fit(model, lambda m, b, g: x0_loss(m, blur, b, g, p=cfg["p"]), digits("train")[0],
               steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed,
               ema_decay=cfg["ema_decay"], warmup=cfg["warmup"], progress=progress, desc="cold restorer")


def load_cold_restorer(seed: int = 0) -> ResidualRestorer:
    """The restorer kept by ``python -m companion.experiments ch4 cold_restorer`` (EMA weights, eval
    mode), checked against the result file's configuration and checksum."""
    state, record = load_weights("ch4", "cold_restorer", check_int("seed", seed, minimum=0),
                                 expect={"model": COLD_CONFIG})
    cfg = _cold_config(record["config"]["model"])
    model = ResidualRestorer(cfg["T"], seed, ch=cfg["ch"], mult=tuple(cfg["mult"]), blocks=cfg["blocks"],
                             max_freq=cfg["max_freq"])
    model.load_state_dict(state)
    return model.eval()
