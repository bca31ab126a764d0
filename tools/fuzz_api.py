"""Throw bad inputs at the public API of the core, the diffusion chapters and the chapter modules
(eae, gau, positions, triples, samplers), and classify what happens.

Every *target* is a public function or method with a valid call; for each of its arguments the
fuzzer substitutes, one at a time, every bad value of that argument's kind (NaN/inf tensors,
empty batches, integer/bool/float16 dtypes, wrong shapes, negative or zero sizes, out-of-range
times, bad seeds, non-callables, callables that return NaN or the wrong shape, unknown options)
and records the outcome of the call:

* ``clear``    — a ``ValueError``/``TypeError`` (the contract);
* ``nonfinite``— it returned NaN or inf (silent);
* ``accepted`` — it returned finite values for an input that is invalid (silent wrong result);
* ``obscure``  — any other exception (IndexError, RuntimeError from deep inside torch, ...);
* ``hang``     — it did not return within the time limit;
* ``oom``      — it ran out of memory (the run sets an address-space limit, ``--memory-gb``).

It also substitutes the inputs that torch accepts and so must be accepted (their labels start
with ``ok:``): ``generator=None`` (torch's global generator), a model callable that returns
float16 or bfloat16 (a network under autocast; the samplers keep their state in float32/float64),
and, for the functions that compute per sample (:data:`BATCH_ARGS`), an empty batch: every batch
argument of shape ``(0, ...)`` at once, which must give a result of shape ``(0, ...)`` too.
Their outcomes:

* ``ok``       — accepted, finite (and empty for an empty batch);
* ``refused``  — an error for an input that torch accepts;
* ``not empty``— an empty batch gave a result of another shape than ``(0, ...)``.

An empty batch stays a bad input where a function reduces over the batch (a metric, a loss: no
value exists) and where only one of several batch arguments is empty (a shape mismatch).

    .venv/bin/python tools/fuzz_api.py            # prints a summary and every case not clear/ok
    .venv/bin/python tools/fuzz_api.py --json out.json

The case list is deterministic (no randomness), so a run is reproducible; ``tests/test_fuzz_api.py``
runs it and requires every case to be ``clear`` or ``ok``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, os.environ.get("COMPANION_ROOT", str(Path(__file__).resolve().parents[1])))

from companion import data, ddpm, metrics, nets, ode, schedules, train, unified, utils  # noqa: E402
from companion import sde as S  # noqa: E402
from companion.core.gmm import GaussianMixture, lab_1d, lab_2d  # noqa: E402

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Timeout


# ----------------------------------------------------------------------------- bad values
def _with(x: torch.Tensor, value: float) -> torch.Tensor:
    y = x.clone()
    y.view(-1)[0] = value
    return y


def bad_tensor(x: torch.Tensor) -> dict[str, object]:
    """Bad versions of a valid floating tensor ``x`` of shape ``(n, ...)``."""
    return {
        "nan entry": _with(x, NAN),
        "inf entry": _with(x, INF),
        "empty batch": x[:0],
        "int dtype": x.round().long(),
        "bool dtype": x > 0,
        "float16": x.half(),
        "python list": x.tolist(),
        "None": None,
    }


def _no_list(d: dict) -> dict:
    """For arguments documented to accept any array-like (a list is converted, not refused)."""
    return {k: v for k, v in d.items() if k != "python list"}


def bad_points(x: torch.Tensor) -> dict[str, object]:
    """As :func:`bad_tensor`, plus wrong trailing dimension and wrong ndim, for ``(n, d)`` points."""
    out = bad_tensor(x)
    out["wrong dim"] = torch.cat([x, x[:, :1]], 1)
    out["1-d"] = x[:, 0]
    out["3-d"] = x[:, None]
    return out


def _no_none(d: dict) -> dict:
    """For optional arguments (``None`` is a valid value)."""
    return {k: v for k, v in d.items() if k != "None"}


def bad_size(_v) -> dict[str, object]:
    return {"zero": 0, "negative": -3, "float": 2.5, "bool": True, "string": "3", "None": None}


def _not_none(bad: dict[str, object]) -> dict[str, object]:
    """The bad values of an optional argument (``None`` is a valid value there)."""
    return {k: v for k, v in bad.items() if k != "None"}


def bad_pos(_v) -> dict[str, object]:
    return {"negative": -1.0, "nan": NAN, "inf": INF, "string": "1", "None": None, "bool": True}


def bad_seed(_v) -> dict[str, object]:
    return {"None": None, "float": 1.5, "bool": True, "string": "0", "negative": -1}


def bad_gen(_v) -> dict[str, object]:
    """A ``generator`` argument: ``None`` is torch's global generator, as in torch (accepted)."""
    return {"ok: None": None, "float": 1.5, "bool": True, "string": "0", "negative": -1}


def bad_step(T: int) -> Callable:
    def make(_v) -> dict[str, object]:
        return {"negative": -1, "zero": 0, "above T": T + 1, "float": 1.5, "bool": True, "string": "1",
                "float tensor": torch.tensor(1.0)}
    return make


def bad_index(T: int) -> Callable:
    """A time index in [0, T] (0 allowed)."""
    def make(_v) -> dict[str, object]:
        return {"negative": -1, "above T": T + 1, "float": 1.5, "bool": True, "string": "1"}
    return make


def bad_ctime(_v) -> dict[str, object]:
    return {"below t_min": -0.5, "above t_max": 1.5, "nan": NAN, "inf": INF, "string": "0.5", "None": None}


def bad_fn(x_shape_fn: Callable | None = None) -> Callable:
    def make(v) -> dict[str, object]:
        half = {} if not callable(v) else {  # a network under autocast: its output is fine
            "ok: returns float16": lambda *a, **k: v(*a, **k).to(torch.float16),
            "ok: returns bfloat16": lambda *a, **k: v(*a, **k).to(torch.bfloat16),
        }
        return {
            **half,
            "None": None,
            "int": 3,
            "returns NaN": lambda x, *a, **k: torch.full_like(x, NAN),
            "returns inf": lambda x, *a, **k: torch.full_like(x, INF),
            "wrong shape": lambda x, *a, **k: x.reshape(x.shape[0], -1)[:, :1].repeat(1, 3),
            "returns a list": lambda x, *a, **k: x.tolist(),
        }
    return make


def bad_option(_v) -> dict[str, object]:
    return {"unknown": "bogus", "None": None, "int": 3}


def bad_schedule(_v) -> dict[str, object]:
    return {"None": None, "string": "linear", "continuous": schedules.su_vp()}


def bad_sde(_v) -> dict[str, object]:
    return {"None": None, "schedule instead": schedules.su_vp(), "string": "vp"}


def bad_gmm(_v) -> dict[str, object]:
    return {"None": None, "tensor": torch.zeros(3, 2)}


def bad_prob(_v) -> dict[str, object]:
    return {"negative": -0.1, "above 1": 1.5, "nan": NAN, "string": "0.5", "None": None}


# ------------------------------------------------------------------------------ targets
@dataclass
class Target:
    name: str
    fn: Callable
    kwargs: Callable[[], dict]  # a valid call
    args: dict[str, Callable]  # argument -> bad-value maker (from the valid value)


def targets() -> list[Target]:
    gm2, gm1 = lab_2d(), lab_1d()
    x2 = gm2.sample(16, 0)
    x1 = gm1.sample(16, 0)
    lin = schedules.DiscreteSchedule.linear(50)
    sub = lin.subsequence(10)
    vp = S.VPSDE()
    cs = schedules.su_vp()
    score_vp = vp.exact_score(gm2)
    eps50 = ddpm.exact_eps_model(gm2, lin)
    sf = ode.gmm_score_fn(gm2)
    G = unified.GaussianNoise(lin)
    B = unified.HeatBlur.linear((8,), 6, 2.0, noise_std=0.1)
    sig8 = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    law = unified.EnumeratedLaw.chain()
    Mk = unified.Masking(4, 3)
    tok = law.sample(6, 0)
    T = []

    def t(name, fn, kwargs, /, **args):
        T.append(Target(name, fn, kwargs, args))

    # ------------------------------------------------------------------ gmm
    t("GaussianMixture", GaussianMixture, lambda: dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=[1.0, 2.0]),
      weights=lambda v: {"negative": [-0.5, 1.5], "not summing to 1": [0.5, 0.6], "nan": [NAN, 1.0],
                         "empty": [], "string": "a"},
      means=lambda v: {"nan": [[NAN], [1.0]], "wrong K": [[0.0]], "inf": [[INF], [0.0]]},
      covs=lambda v: {"zero": [0.0, 1.0], "negative": [-1.0, 1.0], "nan": [NAN, 1.0], "not symmetric":
                      [[[1.0]], [[1.0]]] if False else torch.tensor([[[1.0, 0.5], [0.0, 1.0]]] * 2)})
    for meth in ("log_prob", "score", "score_divergence", "responsibilities"):
        t(f"GaussianMixture.{meth}", getattr(gm2, meth), lambda: dict(x=x2), x=bad_points)
    t("GaussianMixture.cdf", gm1.cdf, lambda: dict(x=x1[:, 0]), x=lambda v: {
        k: w for k, w in bad_tensor(v).items() if k not in ("empty batch",)})
    t("GaussianMixture.sample", gm2.sample, lambda: dict(n=5, generator=0), n=bad_size, generator=bad_gen)
    t("GaussianMixture.noised", gm2.noised, lambda: dict(a=0.5, b=0.5), a=lambda v: {"nan": NAN, "inf": INF,
      "string": "a", "None": None}, b=lambda v: {"negative": -1.0, "nan": NAN, "string": "b", "None": None})
    for meth in ("posterior", "denoise", "eps_prediction"):
        t(f"GaussianMixture.{meth}", getattr(gm2, meth), lambda: dict(x_t=x2, a=0.6, b=0.8), x_t=bad_points,
          a=lambda v: {"nan": NAN, "string": "a", "None": None},
          b=lambda v: {"zero": 0.0, "negative": -0.5, "nan": NAN, "None": None})
    t("GaussianMixture.score_at", gm2.score_at, lambda: dict(x=x2, a=0.6, b=0.8), x=bad_points,
      a=lambda v: {"nan": NAN, "nan 0-d": torch.tensor(NAN, dtype=F64), "string": "a"},
      b=lambda v: {"negative": -0.5, "nan": NAN, "inf 0-d": torch.tensor(INF, dtype=F64), "None": None})
    t("MixturePosterior.sample", gm2.posterior(x2, 0.6, 0.8).sample, lambda: dict(generator=0), generator=bad_gen)
    t("lab_2d", lab_2d, lambda: dict(dtype=F64), dtype=lambda v: {"float16": torch.float16, "int": torch.int64,
                                                                  "string": "float64"})

    # ------------------------------------------------------------- schedules
    DS = schedules.DiscreteSchedule
    t("DiscreteSchedule", DS, lambda: dict(alpha_bar=lin.alpha_bar.clone()),
      alpha_bar=lambda v: {**_no_list(bad_tensor(v)), "increasing": v.flip(0), "above 1": v * 1.5, "zero": v * 0,
                           "2-d": v[None]})
    t("DiscreteSchedule.linear", DS.linear, lambda: dict(T=10, beta_start=1e-4, beta_end=0.02), T=bad_size,
      beta_start=bad_prob, beta_end=bad_prob)
    t("DiscreteSchedule.cosine", DS.cosine, lambda: dict(T=10, s=0.008), T=bad_size, s=bad_pos)
    t("DiscreteSchedule.su", DS.su, lambda: dict(T=10), T=bad_size)
    t("DiscreteSchedule.from_ho", DS.from_ho, lambda: dict(betas=lin.to_ho()["betas"].clone()),
      betas=lambda v: {**_no_list(bad_tensor(v)), "above 1": v + 1.0, "negative": -v})
    t("DiscreteSchedule.subsequence", lin.subsequence, lambda: dict(steps=5, spacing="uniform"),
      steps=lambda v: {**bad_size(v), "above T": 51}, spacing=bad_option)
    t("DiscreteSchedule.check_step", lin.check_step, lambda: dict(t=3), t=bad_step(50))
    for meth in ("alpha_bar", "beta_bar", "sigma", "f", "g2", "song_beta", "edm"):
        t(f"VPSchedule.{meth}", getattr(cs, meth), lambda: dict(t=0.5), t=lambda v: {
            **bad_ctime(v), "nan tensor": torch.tensor([0.5, NAN], dtype=F64), "empty tensor": torch.zeros(0, dtype=F64),
            "int tensor": torch.tensor([0, 1])})
    t("VPSchedule", schedules.VPSchedule, lambda: dict(beta_min=0.1, beta_max=20.0), beta_min=bad_pos,
      beta_max=bad_pos)
    t("VESchedule", schedules.VESchedule, lambda: dict(sigma_min=0.01, sigma_max=50.0), sigma_min=bad_pos,
      sigma_max=bad_pos)
    t("ContinuousSchedule.discretize", cs.discretize, lambda: dict(T=10), T=bad_size)

    # --------------------------------------------------------------- metrics
    y2 = gm2.sample(16, 1)
    t("w1_1d", metrics.w1_1d, lambda: dict(x=x1[:, 0], y=y2[:, 0]), x=bad_tensor, y=bad_tensor)
    t("w1_to_cdf", metrics.w1_to_cdf, lambda: dict(samples=x1[:, 0], cdf=gm1.cdf), samples=bad_tensor,
      cdf=lambda v: {"None": None, "returns NaN": lambda z: torch.full_like(z, NAN), "int": 3})
    t("sliced_wasserstein", metrics.sliced_wasserstein, lambda: dict(x=x2, y=y2, n_projections=8, generator=0),
      x=bad_points, y=bad_points, n_projections=bad_size, generator=bad_gen)
    t("mmd_rbf", metrics.mmd_rbf, lambda: dict(x=x2, y=y2), x=bad_points, y=bad_points,
      bandwidth=lambda v: {"zero": 0.0, "negative": -1.0, "nan": NAN, "string": "1"},
      chunk=lambda v: {k: w for k, w in bad_size(v).items() if k != "None"})
    p = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    t("total_variation", metrics.total_variation, lambda: dict(p=p, q=p.flip(0)),
      p=lambda v: {**bad_tensor(v), "negative": torch.tensor([-0.2, 0.7, 0.5], dtype=F64),
                   "wrong length": p[:2]}, q=bad_tensor)
    t("empirical_pmf", metrics.empirical_pmf, lambda: dict(labels=torch.tensor([0, 1, 2, 1]), n_states=3),
      labels=lambda v: {"float": v.double(), "out of range": torch.tensor([0, 5]), "negative": torch.tensor([-1, 0]),
                        "empty": v[:0], "None": None}, n_states=bad_size)
    mu, cov = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)
    t("gaussian_frechet", metrics.gaussian_frechet, lambda: dict(mu1=mu, cov1=cov, mu2=mu + 1, cov2=2 * cov),
      mu1=lambda v: {"nan": _with(v, NAN), "wrong dim": torch.zeros(3, dtype=F64), "None": None},
      cov1=lambda v: {"nan": _with(v, NAN), "not PSD": -v, "not symmetric": torch.tensor([[1.0, 1.0], [0.0, 1.0]],
                      dtype=F64), "wrong shape": torch.eye(3, dtype=F64), "float16": v.half()})
    t("frechet_distance", metrics.frechet_distance, lambda: dict(x=x2, y=y2), x=bad_points, y=bad_points)
    t("loglog_slope", metrics.loglog_slope, lambda: dict(x=[1.0, 2.0, 4.0], y=[1.0, 0.5, 0.25]),
      x=lambda v: {"zero": [0.0, 1.0, 2.0], "negative": [-1.0, 1.0, 2.0], "nan": [NAN, 1.0, 2.0], "constant":
                   [1.0, 1.0, 1.0], "one point": [1.0], "None": None},
      y=lambda v: {"zero": [0.0, 1.0, 2.0], "inf": [INF, 1.0, 2.0], "wrong length": [1.0, 2.0], "None": None})

    # ----------------------------------------------------------- utils, data
    t("make_generator", utils.make_generator, lambda: dict(seed=0), seed=bad_gen)
    t("check_positive", utils.check_positive, lambda: dict(name="v", value=1.0), value=bad_pos)
    t("append_dims", utils.append_dims, lambda: dict(x=torch.zeros(3), ndim=3), ndim=lambda v: {"too small": 0})
    for name in ("moons", "rings", "checkerboard", "spiral"):
        t(f"data.{name}", getattr(data, name), lambda: dict(n=8, generator=0), n=bad_size, generator=bad_gen)
    t("data.moons noise", data.moons, lambda: dict(n=8, generator=0, noise=0.05), noise=bad_pos)
    t("data.digits", data.digits, lambda: dict(split="train", seed=0, test_fraction=0.25), split=bad_option,
      seed=bad_seed, test_fraction=bad_prob)

    # ---------------------------------------------------------------- nets, train
    mlp = nets.TimeMLP(dim=2, hidden=8, depth=1)
    t("TimeMLP.forward", mlp, lambda: dict(x=x2.float(), t=0.5), x=bad_points,
      t=lambda v: {"nan": NAN, "inf": INF, "nan tensor": torch.full((16,), NAN), "wrong shape": torch.zeros(3),
                   "string": "0.5", "bool tensor": torch.ones(16, dtype=torch.bool)})
    t("TimeMLP", nets.TimeMLP, lambda: dict(dim=2, hidden=8, depth=1, time_scale=1.0), dim=bad_size,
      hidden=bad_size, depth=bad_size, time_scale=bad_pos)
    conv = nets.UNet(ch=8)
    t("UNet.forward", conv, lambda: dict(x=torch.zeros(2, 1, 8, 8), t=1.0), x=lambda v: {
        **bad_tensor(v), "wrong image": torch.zeros(2, 1, 7, 7), "3-d": torch.zeros(2, 8, 8)},
      t=lambda v: {"nan": NAN, "string": "1"})
    t("SinusoidalEmbedding", nets.SinusoidalEmbedding, lambda: dict(dim=8, max_freq=100.0), dim=lambda v: {
        **bad_size(v), "odd": 5}, max_freq=bad_pos)
    net_small = torch.nn.Linear(2, 2).double()
    loss = lambda m, b, g: ((m(b) - b) ** 2).mean()
    t("fit", train.fit, lambda: dict(model=net_small, loss_fn=loss, data=x2, steps=2, batch_size=4, seed=0,
                                     progress=False),
      model=lambda v: {"None": None, "no parameters": torch.nn.Identity(), "function": lambda z: z},
      loss_fn=lambda v: {"None": None, "returns float": lambda m, b, g: 1.0,
                         "returns NaN": lambda m, b, g: (m(b) * NAN).mean(),
                         "returns a vector": lambda m, b, g: m(b).sum(1)},
      data=lambda v: {"nan": _with(v, NAN), "empty": v[:0], "None": None, "list": v.tolist()},
      steps=bad_size, batch_size=bad_size, seed=bad_seed,
      lr=lambda v: {"zero": 0.0, "negative": -1e-3, "nan": NAN, "string": "1e-3"},
      grad_clip=lambda v: {"zero": 0.0, "negative": -1.0, "nan": NAN},
      ema_decay=lambda v: {"above 1": 1.5, "negative": -0.1, "nan": NAN})
    t("batches", lambda **k: next(iter(train.batches(**k))), lambda: dict(data=x2, batch_size=4,
                                                                        generator=torch.Generator()),
      data=lambda v: {"empty": v[:0], "None": None}, batch_size=bad_size,
      generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"})

    # ------------------------------------------------------------------- ddpm
    e2 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    t("ddpm.q_sample", ddpm.q_sample, lambda: dict(schedule=lin, x0=x2, t=5, noise=e2), schedule=bad_schedule,
      x0=bad_tensor, t=lambda v: {**bad_index(50)(v), "tensor out of range": torch.full((16,), 51),
                                  "negative tensor": torch.full((16,), -1), "float tensor": torch.full((16,), 1.0),
                                  "wrong length": torch.ones(3, dtype=torch.long)},
      noise=lambda v: {**bad_tensor(v), "wrong shape": v[:3]})
    t("ddpm.posterior", ddpm.posterior, lambda: dict(schedule=lin, t=5, x_t=x2, x0=e2), schedule=bad_schedule,
      t=bad_step(50), x_t=bad_tensor, x0=lambda v: {**bad_tensor(v), "wrong shape": v[:3]})
    for nm in ("x0_from_eps", "eps_from_x0"):
        last = "eps" if nm == "x0_from_eps" else "x0"
        t(f"ddpm.{nm}", getattr(ddpm, nm), lambda last=last: {"schedule": lin, "t": 5, "x_t": x2, last: e2},
          t=lambda v: {**bad_step(50)(v), "tensor with 0": torch.zeros(16, dtype=torch.long)}, x_t=bad_tensor,
          **{last: lambda v: {**bad_tensor(v), "wrong shape": v[:3]}})
    t("ddpm.eps_loss", ddpm.eps_loss, lambda: dict(model=lambda x, tt: torch.zeros_like(x), schedule=lin, x0=x2, generator=torch.Generator()),
      model=bad_fn(), x0=bad_tensor, generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"},
      weighting=bad_option, reduction=bad_option)
    t("ddpm.ddim_sigma", ddpm.ddim_sigma, lambda: dict(schedule=lin, t=5, eta=0.5), t=bad_step(50), eta=bad_pos)
    t("ddpm.ddpm_step", ddpm.ddpm_step, lambda: dict(schedule=lin, t=5, x_t=x2, eps=e2, generator=torch.Generator()),
      t=bad_step(50), x_t=bad_tensor, eps=lambda v: {**bad_tensor(v), "wrong shape": v[:3]},
      variance=lambda v: {"unknown": "bogus", "negative": -1.0, "nan": NAN},
      generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"})
    t("ddpm.ddim_step", ddpm.ddim_step, lambda: dict(schedule=lin, t=5, x_t=x2, eps=e2, eta=0.5,
                                                    generator=torch.Generator()),
      t=bad_step(50), x_t=bad_tensor, eps=bad_tensor, eta=lambda v: {**bad_pos(v), "too large": 50.0},
      sigma=lambda v: {"negative": -1.0, "nan": NAN, "too large": 10.0})
    t("ddpm.reverse_gamma", ddpm.reverse_gamma, lambda: dict(schedule=lin, t=5, sigma=0.01), t=bad_step(50),
      sigma=lambda v: {**bad_pos(v), "too large": 10.0})
    t("ddpm.reverse_variance", ddpm.reverse_variance, lambda: dict(schedule=lin, t=5, x0_var=0.3), t=bad_step(50),
      x0_var=lambda v: {"negative": -0.1, "nan": NAN, "string": "a", "None": None,
                        "nan tensor": torch.tensor([NAN]), "negative tensor": torch.tensor([-1.0])})
    t("ddpm.analytic_x0_var", ddpm.analytic_x0_var, lambda: dict(schedule=lin, t=5, eps_sq_mean=0.5),
      t=bad_step(50), eps_sq_mean=bad_pos)
    t("ddpm.analytic_dpm_variances", ddpm.analytic_dpm_variances, lambda: dict(model=eps50, schedule=sub, x0=x2,
                                                                              generator=0),
      model=bad_fn(), schedule=bad_schedule, x0=bad_tensor, generator=bad_gen,
      x0_var_max=lambda v: {"negative": -1.0, "nan": NAN, "string": "1"})
    t("ddpm.exact_eps_model", ddpm.exact_eps_model, lambda: dict(mixture=gm2, schedule=lin), mixture=bad_gmm,
      schedule=bad_schedule)
    t("ddpm.exact_eps_model(...)", eps50, lambda: dict(x=x2, t_label=5), x=bad_points,
      t_label=lambda v: {"negative": -1, "zero": 0, "above T": 51, "string": "5", "None": None})
    xT = gm2.noised(lin.alpha_bar[-1].item(), lin.beta_bar[-1].item()).sample(16, 3)
    t("ddpm.sample", ddpm.sample, lambda: dict(model=eps50, schedule=sub, x_T=xT, eta=1.0, generator=0),
      model=bad_fn(), schedule=bad_schedule, x_T=bad_tensor, eta=lambda v: {**bad_pos(v), "above 1": 1.5},
      variance=lambda v: {"unknown": "bogus", "nan tensor": torch.full((11,), NAN, dtype=F64),
                          "negative tensor": -torch.ones(11, dtype=F64), "wrong length": torch.ones(3, dtype=F64)},
      generator=bad_gen, callback=lambda v: {"int": 3})

    # -------------------------------------------------------------------- sde
    t("SDE.marginal", vp.marginal, lambda: dict(x0=x2, t=0.5), x0=bad_tensor, t=bad_ctime)
    t("SDE.perturb", vp.perturb, lambda: dict(x0=x2, t=0.5, generator=0), x0=bad_tensor, t=bad_ctime,
      generator=bad_gen)
    t("SDE.transition", vp.transition, lambda: dict(t=0.3, s=0.6), t=lambda v: {
        **bad_ctime(v), "after s": 0.9}, s=bad_ctime)
    t("SDE.prior_sample", vp.prior_sample, lambda: dict(shape=(4, 2), generator=0),
      shape=lambda v: {"negative": (-1, 2), "None": None, "string": "4"}, generator=bad_gen,
      dtype=lambda v: {"float16": torch.float16, "int": torch.int64})
    t("SDE.prior_log_prob", vp.prior_log_prob, lambda: dict(z=x2), z=bad_tensor)
    t("SDE.marginal_law", vp.marginal_law, lambda: dict(gmm=gm2, t=0.5), gmm=bad_gmm, t=bad_ctime)
    t("SDE.exact_score(...)", score_vp, lambda: dict(x=x2, t=0.5), x=bad_points, t=bad_ctime)
    t("VPSDE", S.VPSDE, lambda: dict(beta_min=0.1, beta_max=20.0), beta_min=bad_pos, beta_max=bad_pos)
    t("VESDE", S.VESDE, lambda: dict(sigma_min=0.01, sigma_max=50.0), sigma_min=bad_pos, sigma_max=bad_pos)
    t("sde.time_grid", S.time_grid, lambda: dict(sde=vp, steps=5), sde=bad_sde, steps=bad_size,
      t_start=lambda v: {k: w for k, w in bad_ctime(v).items() if k != "None"}, t_end=lambda v: {"nan": NAN, "above t_max": 1.5, "string": "0"})
    t("sde.forward_sample", S.forward_sample, lambda: dict(sde=vp, x0=x2, steps=5, generator=0), sde=bad_sde,
      x0=bad_tensor, steps=bad_size, generator=bad_gen)
    t("sde.reverse_step", S.reverse_step, lambda: dict(sde=vp, score_fn=score_vp, x=x2, t=0.5, t_next=0.4,
                                                      generator=0),
      score_fn=bad_fn(), x=bad_tensor, t=bad_ctime, t_next=lambda v: {**bad_ctime(v), "after t": 0.6},
      nu=lambda v: {"negative": -1.0, "nan": NAN, "string": "1"}, generator=bad_gen)
    t("sde.reverse_sample", S.reverse_sample, lambda: dict(sde=vp, score_fn=score_vp, x=x2, steps=4, generator=0),
      sde=bad_sde, score_fn=bad_fn(), x=bad_tensor, steps=bad_size, generator=bad_gen,
      times=lambda v: {"increasing": torch.tensor([0.1, 0.5, 1.0], dtype=F64),
                       "nan": torch.tensor([1.0, NAN, 0.1], dtype=F64), "one": torch.tensor([1.0], dtype=F64)})
    t("sde.pc_sample", S.pc_sample, lambda: dict(sde=vp, score_fn=score_vp, x=x2, steps=3, generator=0),
      score_fn=lambda v: {**bad_fn()(v), "zero score": lambda x, tt: torch.zeros_like(x)}, x=bad_tensor,
      snr=bad_pos, n_corrector=lambda v: {"negative": -1, "float": 1.5}, steps=bad_size, generator=bad_gen)
    t("sde.pf_ode_drift", S.pf_ode_drift, lambda: dict(sde=vp, score_fn=score_vp, x=x2, t=0.5), score_fn=bad_fn(),
      x=bad_tensor, t=bad_ctime)
    t("sde.ddim_ode_drift", S.ddim_ode_drift, lambda: dict(sde=vp, eps_fn=lambda x, tt: torch.zeros_like(x),
                                                          x=x2, t=0.5),
      eps_fn=bad_fn(), x=bad_tensor, t=bad_ctime)
    tt16 = torch.full((16,), 0.5, dtype=F64)
    t("sde.dsm_loss", S.dsm_loss, lambda: dict(sde=vp, score_fn=score_vp, x0=x2, t=tt16, noise=e2),
      score_fn=bad_fn(), x0=bad_tensor, t=lambda v: {"nan": _with(v, NAN), "above t_max": v + 1,
                                                     "wrong length": v[:3], "None": None},
      noise=lambda v: {**bad_tensor(v), "wrong shape": v[:3]}, weighting=bad_option, reduction=bad_option)
    lf = S.dsm_objective(vp)
    t("sde.dsm_objective", S.dsm_objective, lambda: dict(sde=vp, t_min=1e-3), sde=bad_sde,
      t_min=lambda v: {"negative": -0.1, "nan": NAN, "at t_max": 1.0, "string": "0"},
      parametrization=bad_option)
    t("sde.dsm_objective(...)", lf, lambda: dict(model=lambda x, tt: torch.zeros_like(x), x0=x2,
                                               generator=torch.Generator()),
      model=bad_fn(), x0=bad_tensor, generator=lambda v: {"ok: None": None, "float": 1.5})
    t("sde.reverse_kernel_gaussian", S.reverse_kernel_gaussian, lambda: dict(sde=vp, score_fn=score_vp, x_next=x2,
                                                                            t=0.5, dt=0.01),
      score_fn=bad_fn(), x_next=bad_tensor, t=bad_ctime, dt=bad_pos)
    grid = torch.linspace(-6, 6, 401, dtype=F64)
    t("sde.reverse_kernel_bayes_1d", S.reverse_kernel_bayes_1d,
      lambda: dict(log_prior=lambda z: gm1.log_prob(z[:, None]), x_next=0.3, a=0.9, b=0.3, grid=grid),
      log_prior=lambda v: {"None": None, "returns NaN": lambda z: torch.full(z.shape[:1], NAN, dtype=F64)},
      x_next=lambda v: {"nan": NAN, "string": "0"}, a=lambda v: {"nan": NAN, "string": "1"},
      b=lambda v: {"zero": 0.0, "negative": -1.0, "nan": NAN})
    xs = torch.linspace(-8, 8, 201, dtype=F64)
    p0 = torch.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi)
    times = torch.tensor([0.0, 0.1], dtype=F64)
    t("SDE.fokker_planck", vp.fokker_planck, lambda: dict(p0=p0, x=xs, times=times, steps=5),
      p0=lambda v: {"nan": _with(v, NAN), "negative": -v, "wrong length": v[:5]},
      x=lambda v: {"decreasing": v.flip(0), "nan": _with(v, NAN)},
      times=lambda v: {"decreasing": v.flip(0), "nan": _with(v, NAN), "above t_max": v + 5},
      steps=bad_size)
    t("sde.PrecondEps", S.PrecondEps, lambda: dict(sde=vp, net=mlp, data_var=1.0), sde=bad_sde,
      net=lambda v: {"None": None, "function": lambda x, tt: x}, data_var=bad_pos)
    pe = S.PrecondEps(vp, nets.TimeMLP(dim=2, hidden=8, depth=1).double())
    t("PrecondEps.forward", pe, lambda: dict(x=x2, t=0.5), x=bad_tensor, t=bad_ctime)

    # -------------------------------------------------------------------- ode
    t("ode.gmm_score_fn(...)", sf, lambda: dict(x=x2, sigma=0.5), x=bad_points, sigma=bad_pos)
    t("ode.heat_log_density", ode.heat_log_density, lambda: dict(gm=gm2, x=x2, sigma=0.5), gm=bad_gmm,
      x=bad_points, sigma=lambda v: {**bad_pos(v), "nan tensor": torch.full((16,), NAN, dtype=F64),
                                    "wrong length": torch.ones(3, dtype=F64)})
    t("ode.heat_spectral_1d", ode.heat_spectral_1d, lambda: dict(p0=p0, dx=0.08, sigma=0.5), p0=bad_tensor,
      dx=bad_pos, sigma=bad_pos)
    t("ode.sigma_grid", ode.sigma_grid, lambda: dict(n=5, sigma_min=0.01, sigma_max=10.0, rho=7.0), n=bad_size,
      sigma_min=bad_pos, sigma_max=lambda v: {**bad_pos(v), "below sigma_min": 0.001}, rho=bad_pos,
      dtype=lambda v: {"int": torch.int64, "float16": torch.float16, "string": "float64"})
    t("ode.heat_velocity", ode.heat_velocity, lambda: dict(score_fn=sf, x=x2, sigma=0.5), score_fn=bad_fn(),
      x=bad_tensor, sigma=bad_pos)
    t("ode.heat_drift", ode.heat_drift, lambda: dict(score_fn=sf, x=x2, t=0.5, sigma_fn=lambda tt: 2 * tt),
      score_fn=bad_fn(), x=bad_tensor, t=lambda v: {"nan": NAN, "inf": INF, "string": "a", "None": None},
      sigma_fn=lambda v: {"None": None, "negative": lambda tt: -tt, "returns NaN": lambda tt: tt * NAN,
                          "returns float": lambda tt: 0.5})
    t("ode.pf_ode_drift", ode.pf_ode_drift, lambda: dict(schedule=cs, score_fn_t=score_vp, x=x2, t=0.5),
      schedule=lambda v: {"None": None, "discrete": lin}, score_fn_t=bad_fn(), x=bad_tensor, t=bad_ctime)
    t("ode.vp_to_heat", ode.vp_to_heat, lambda: dict(schedule=cs, x=x2, t=0.5), x=bad_tensor, t=bad_ctime)
    sg = ode.sigma_grid(4, 0.01, 5.0)
    for nm in ("sample_euler", "sample_heun", "sample_rk4"):
        t(f"ode.{nm}", getattr(ode, nm), lambda: dict(score_fn=sf, x=x2 * 5, sigmas=sg), score_fn=bad_fn(),
          x=bad_tensor, sigmas=lambda v: {**bad_tensor(v), "increasing": v.flip(0), "zero": _with(v.flip(0), 0.0)
                                          .flip(0), "one level": v[:1], "int": torch.tensor([3, 2, 1])},
          callback=lambda v: {"int": 3}, extra_velocity=lambda v: {"int": 3, "returns NaN": lambda x, s: x * NAN})
    t("ode.solve_adaptive", ode.solve_adaptive, lambda: dict(fn=lambda y, tt: -y, y0=x2, t0=0.0, t1=1.0),
      fn=bad_fn(), y0=bad_tensor, t0=lambda v: {"nan": NAN, "inf": INF, "string": "a", "None": None},
      t1=lambda v: {"nan": NAN, "inf": INF}, rtol=bad_pos, atol=bad_pos, max_steps=bad_size,
      h0=lambda v: {"negative": -0.1, "nan": NAN})
    t("ode.sample_adaptive", ode.sample_adaptive, lambda: dict(score_fn=sf, x=x2, sigma_max=1.0, sigma_min=0.1,
                                                              rtol=1e-4, atol=1e-4),
      score_fn=bad_fn(), x=bad_tensor, sigma_max=bad_pos, sigma_min=bad_pos)
    t("ode.batch_jacobian", ode.batch_jacobian, lambda: dict(fn=lambda y: y**2, x=x2),
      fn=lambda v: {**bad_fn()(v), "log of zero": lambda y: torch.log(y * 0)},
      x=lambda v: {**bad_tensor(v), "1-d": v[:, 0], "3-d": v[:, None]})
    t("ode.divergence", ode.divergence, lambda: dict(fn=lambda y: y**2, x=x2),
      fn=lambda v: {"None": None, "int": 3, "returns inf": lambda y: y / 0.0, "inf divergence":
                    lambda y: torch.sqrt(y - y.detach()), "wrong shape": lambda y: y[:, :1]},
      x=bad_tensor, method=bad_option)
    t("ode.divergence hutchinson", ode.divergence, lambda: dict(fn=lambda y: y**2, x=x2, method="hutchinson",
                                                               probes=torch.ones(2, 16, 2, dtype=F64)),
      probes=lambda v: {**bad_tensor(v), "wrong shape": v[:, :3]})
    t("ode.gaussian_log_prob", ode.gaussian_log_prob, lambda: dict(x=x2, std=1.0), x=bad_tensor, std=bad_pos)
    t("ode.log_likelihood", ode.log_likelihood, lambda: dict(score_fn=sf, x=x2[:4], sigma_min=0.1, sigma_max=5.0,
                                                            method="hutchinson", generator=0, rtol=1e-3,
                                                            atol=1e-3),
      score_fn=bad_fn(), x=bad_tensor, sigma_min=bad_pos, sigma_max=lambda v: {**bad_pos(v), "below min": 0.05},
      method=bad_option, probe=bad_option, n_probes=bad_size, generator=bad_gen,
      prior_logp=lambda v: {"int": 3, "returns NaN": lambda z: torch.full(z.shape[:1], NAN, dtype=F64),
                            "wrong shape": lambda z: z})
    snet = ode.ScoreNet(nets.TimeMLP(dim=2, hidden=8, depth=1).double())
    t("ode.ScoreNet", ode.ScoreNet, lambda: dict(net=mlp, sigma_data=1.0),
      net=lambda v: {"None": None, "function": lambda x, tt: x}, sigma_data=bad_pos)
    t("ScoreNet.forward", snet, lambda: dict(x=x2, sigma=0.5), x=bad_points,
      sigma=lambda v: {**bad_pos(v), "zero": 0.0, "wrong length": torch.ones(3, dtype=F64)})
    t("ode.csm_loss", ode.csm_loss, lambda: dict(model=snet, x0=x2, generator=torch.Generator()),
      model=lambda v: {"None": None, "module": mlp}, x0=bad_points, generator=bad_gen,
      p_mean=lambda v: {"nan": NAN, "inf": INF, "string": "a"}, p_std=bad_pos)

    # ------------------------------------------------------- denoiser.generate
    from companion import denoiser as DN

    tiny = DN.digits_denoiser(0, ch=8)
    for smp in DN.DIGITS_SAMPLERS:
        t(f"denoiser.generate {smp}", DN.generate, lambda smp=smp: dict(model=tiny, sampler=smp, nfe=2, n=2, seed=0),
          n=lambda v: {**{k: w for k, w in bad_size(v).items() if k != "zero"}, "ok: zero (empty batch)": 0})
    t("denoiser.generate", DN.generate, lambda: dict(model=tiny, sampler="DDIM", nfe=2, n=2, seed=0),
      model=lambda v: {"None": None, "module": mlp}, sampler=bad_option, nfe=bad_size, seed=bad_seed)

    # ---------------------------------------------------------------- unified
    t("GaussianNoise", unified.GaussianNoise, lambda: dict(schedule=lin), schedule=bad_schedule)
    t("GaussianNoise.corrupt", G.corrupt, lambda: dict(x0=x2, t=5, generator=0), x0=bad_tensor,
      t=lambda v: {**bad_index(50)(v), "tensor out of range": torch.full((16,), 51),
                   "float tensor": torch.full((16,), 1.0)}, generator=bad_gen)
    t("GaussianNoise.forward", G.forward, lambda: dict(x0=x2, t=5, noise=e2), x0=bad_tensor, t=bad_index(50),
      noise=lambda v: {**bad_tensor(v), "wrong shape": v[:3]})
    t("GaussianNoise.invert", G.invert, lambda: dict(x0=x2, x_t=e2, t=5), x0=bad_tensor, x_t=bad_tensor,
      t=lambda v: {**bad_index(50)(v), "zero (no noise)": 0})
    t("GaussianNoise.noise_level", G.noise_level, lambda: dict(s=5), s=bad_index(50))
    t("GaussianNoise.linear_map", G.linear_map, lambda: dict(t=5), t=bad_index(50))
    t("GaussianNoise.ddpm_fraction", G.ddpm_fraction, lambda: dict(t=5, s=3, eta=1.0), t=bad_index(50),
      s=lambda v: {**bad_index(50)(v), "after t": 6}, eta=lambda v: {**bad_pos(v), "above 1": 1.5})
    t("GaussianNoise.reuse", G.reuse, lambda: dict(x0=x2, x_t=e2, t=5, s=3), t=bad_index(50), s=bad_index(50),
      x0=bad_tensor, x_t=bad_tensor)
    t("HeatBlur", unified.HeatBlur, lambda: dict(shape=(8,), widths=torch.tensor([0.0, 1.0, 2.0], dtype=F64)),
      shape=lambda v: {"zero": (0,), "3-d": (2, 2, 2), "None": None, "float": (2.5,)},
      widths=lambda v: {"nan": _with(v, NAN).flip(0).flip(0) if False else torch.tensor([0.0, NAN]),
                        "negative": torch.tensor([0.0, -1.0]), "not starting at 0": torch.tensor([1.0, 2.0])},
      noise_std=lambda v: {"negative": -0.1, "nan": NAN, "wrong length": torch.ones(2, dtype=F64)},
      boundary=bad_option)
    t("HeatBlur.degrade", B.degrade, lambda: dict(x0=sig8, t=3), x0=lambda v: {
        **bad_tensor(v), "wrong signal shape": torch.zeros(4, 9, dtype=F64)}, t=bad_index(6))
    t("HeatBlur.linear_map", B.linear_map, lambda: dict(t=3), t=bad_index(6))
    t("HeatBlur.linear", unified.HeatBlur.linear, lambda: dict(shape=(8,), T=4, max_width=2.0), T=bad_size,
      max_width=bad_pos)
    t("heat_blur", unified.heat_blur, lambda: dict(x=sig8, tau=0.5), x=bad_tensor,
      tau=lambda v: {**bad_pos(v), "wrong length": torch.ones(3, dtype=F64)}, ndim=bad_size, boundary=bad_option)
    t("laplacian_eigenvalues", unified.laplacian_eigenvalues, lambda: dict(n=8), n=bad_size, boundary=bad_option)
    t("Masking", unified.Masking, lambda: dict(length=4, mask_token=3), length=bad_size,
      mask_token=lambda v: {"negative": -1, "float": 1.5, "None": None})
    t("Masking.corrupt", Mk.corrupt, lambda: dict(x0=tok, t=2, generator=0),
      x0=lambda v: {"float": v.double(), "wrong length": v[:, :2], "None": None, "bool": v > 0},
      t=bad_index(4), generator=bad_gen)
    t("Masking.invert", Mk.invert, lambda: dict(x0=tok, x_t=Mk.corrupt(tok, 2, 0), t=2, generator=0),
      t=bad_index(4), generator=bad_gen)
    t("Substitution", unified.Substitution, lambda: dict(length=4, vocab=3), length=bad_size,
      vocab=lambda v: {**bad_size(v), "one": 1})
    t("EnumeratedLaw.chain", unified.EnumeratedLaw.chain, lambda: dict(vocab=3, length=4),
      vocab=lambda v: {**bad_size(v), "huge state space": 40}, length=lambda v: {**bad_size(v), "huge": 40},
      seed=bad_seed)
    t("EnumeratedLaw", unified.EnumeratedLaw, lambda: dict(pmf=law.pmf.clone(), vocab=3, length=4),
      pmf=lambda v: {"nan": _with(v, NAN), "negative": v - 1.0, "wrong size": v[:5], "None": None},
      vocab=lambda v: {"too many states": 1000}, length=lambda v: {"too many states": 100})
    t("EnumeratedLaw.sample", law.sample, lambda: dict(n=4, generator=0), n=bad_size, generator=bad_gen)
    t("EnumeratedLaw.tv", law.tv, lambda: dict(x=tok), x=lambda v: {"float": v.double(), "out of range": v + 5,
                                                                   "wrong length": v[:, :2], "None": None})
    t("EnumeratedLaw.masked_marginals", law.masked_marginals, lambda: dict(x_t=Mk.corrupt(tok, 2, 0), mask_token=3),
      x_t=lambda v: {"float": v.double(), "wrong length": v[:, :2]})
    est = unified.eps_model_estimator(eps50, G)
    t("eps_model_estimator(...)", est, lambda: dict(x=x2, t=5), x=bad_tensor,
      t=lambda v: {**bad_index(50)(v), "zero": 0} if False else bad_index(50)(v))
    t("eps_model_estimator", unified.eps_model_estimator, lambda: dict(model=eps50, corruption=G),
      model=lambda v: {"None": None, "int": 3}, corruption=lambda v: {"None": None, "masking": Mk})
    spread = unified.gaussian_spread_estimator(est, torch.full((51,), 0.1, dtype=F64))
    t("gaussian_spread_estimator(...)", spread, lambda: dict(x=x2, t=5, g=torch.Generator()), t=bad_index(50),
      g=lambda v: {"ok: None": None, "float": 1.5})
    t("gaussian_spread_estimator", unified.gaussian_spread_estimator,
      lambda: dict(point=est, x0_std=torch.full((51,), 0.1, dtype=F64)),
      point=lambda v: {"None": None}, x0_std=lambda v: {**bad_tensor(v), "negative": -v, "one entry": v[:1]})
    pest = unified.posterior_estimator(gm2, G, "sample")
    t("posterior_estimator(...)", pest, lambda: dict(x=x2, t=5, g=torch.Generator()), t=bad_index(50),
      g=lambda v: {"ok: None": None, "float": 1.5},
      x=lambda v: {**bad_tensor(v), "wrong dim": torch.cat([v, v[:, :1]], 1)})
    t("posterior_estimator", unified.posterior_estimator, lambda: dict(mixture=gm2, corruption=G),
      mixture=bad_gmm, corruption=lambda v: {"masking": Mk, "None": None}, mode=bad_option)
    fest = unified.factorized_estimator(lambda x, tt: law.masked_marginals(x, 3), 3)
    t("factorized_estimator(...)", fest, lambda: dict(x=Mk.corrupt(tok, 2, 0), t=2, g=torch.Generator()),
      g=lambda v: {"ok: None": None, "float": 1.5})
    t("unified.sample", unified.sample, lambda: dict(estimator=pest, corruption=G, x_T=xT, times=[50, 25, 0],
                                                   design=unified.Reuse(), generator=0),
      estimator=lambda v: {"None": None, "int": 3}, x_T=bad_tensor,
      times=lambda v: {"not ending at 0": [50, 25], "above T": [60, 0], "negative": [10, -1], "repeat": [10, 10, 0],
                       "floats": [50.0, 0.0], "one": [0], "float tensor": torch.tensor([50.0, 0.0])},
      design=lambda v: {"None": None, "class not instance": unified.Reuse, "string": "reuse"},
      generator=lambda v: {"float": 1.5, "string": "0", "negative": -1})
    t("GaussianRenoise", unified.GaussianRenoise, lambda: dict(frac=0.5),
      frac=lambda v: {"negative": -0.1, "above 1": 1.5, "nan": NAN, "string": "a"})
    t("x0_loss", unified.x0_loss, lambda: dict(model=lambda x, tt: x, corruption=G, x0=x2, generator=0),
      model=bad_fn(), x0=bad_tensor, generator=bad_gen, p=lambda v: {"three": 3, "string": "2"},
      t_min=lambda v: {"negative": -1, "above T": 60, "float": 1.5})
    tm = unified.TokenMLP(3, 4, hidden=8)
    t("masked_lm_loss", unified.masked_lm_loss, lambda: dict(model=tm, corruption=Mk, x0=tok, generator=0),
      model=lambda v: {"None": None}, corruption=lambda v: {"gaussian": G, "None": None},
      x0=lambda v: {"float": v.double(), "empty": v[:0], "wrong length": v[:, :2], "out of range": v + 5},
      generator=bad_gen)
    t("TokenMLP.forward", tm, lambda: dict(x_t=tok), x_t=lambda v: {"float": v.double(), "wrong length": v[:, :2],
                                                                   "out of range": v + 7, "negative": v - 5})
    return T


# ------------------------------------------------------------------ chapter modules
def chapter_targets() -> list[Target]:
    """The chapter modules: eae, gau, positions, triples, samplers (cheap valid calls only)."""
    from companion import eae, gau
    from companion import positions as P
    from companion import samplers as SM
    from companion import triples as TR

    T = []

    def t(name, fn, kwargs, /, **args):
        T.append(Target(name, fn, kwargs, args))

    gm2 = lab_2d()
    z = gm2.sample(32, 0)
    # ------------------------------------------------------------------- eae
    t("eae.unit_ball_log_volume", eae.unit_ball_log_volume, lambda: dict(d=3), d=bad_size)
    t("eae.gaussian_entropy", eae.gaussian_entropy, lambda: dict(cov=torch.eye(2, dtype=F64)),
      cov=lambda v: {"nan": _with(v, NAN), "not PSD": -v, "not square": v[:1], "1-d": v[0], "int": v.long(),
                     "None": None})
    bad_z = lambda v: {**bad_tensor(v), "1-d": v[:, 0], "3-d": v[:, None], "one point": v[:1]}  # noqa: E731
    t("eae.knn_distances", eae.knn_distances, lambda: dict(z=z, k=1), z=bad_z,
      k=lambda v: {**bad_size(v), "k >= n": 32}, chunk=bad_size, method=bad_option)
    t("eae.knn_search_method", eae.knn_search_method, lambda: dict(n=10, d=2), n=bad_size, d=bad_size)
    t("eae.knn_entropy", eae.knn_entropy, lambda: dict(z=z, k=1), z=bad_z, k=bad_size, chunk=bad_size,
      method=bad_option)
    eps = eae.knn_distances(z, 1)[:, 0]
    t("eae.knn_entropy_from_distances", eae.knn_entropy_from_distances, lambda: dict(eps=eps, d=2, k=1),
      eps=lambda v: {**bad_tensor(v), "negative": -v, "2-d": v[:, None]}, d=bad_size, k=bad_size)
    t("eae.gaussianity_gap", eae.gaussianity_gap, lambda: dict(z=z, k=1), z=bad_z, k=bad_size)
    t("eae.mlp", eae.mlp, lambda: dict(sizes=[2, 4, 2]), sizes=lambda v: {"one": [2], "zero": [2, 0, 2],
      "negative": [2, -1], "float": [2, 2.5], "None": None, "string": "24"})
    for cls in (eae.EAE, eae.VAE):
        nm = cls.__name__
        t(f"eae.{nm}", cls, lambda: dict(x_shape=(1, 4, 4), latent=2, hidden=8),
          x_shape=lambda v: {"zero": (0, 4), "negative": (1, -4), "None": None, "float": (1.5, 4), "empty": ()},
          latent=bad_size, hidden=bad_size)
    torch.manual_seed(0)
    ea, va = eae.EAE((1, 4, 4), latent=2, hidden=8).double(), eae.VAE((1, 4, 4), latent=2, hidden=8).double()
    xi = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    bad_img = lambda v: {**bad_tensor(v), "wrong image": v[:, :, :3], "flat": v.flatten(1)}  # noqa: E731
    t("eae.EAE momentum", eae.EAE, lambda: dict(x_shape=(1, 4, 4), latent=2, hidden=8, momentum=0.05),
      momentum=bad_prob)
    t("EAE.forward", ea, lambda: dict(x=xi), x=bad_img)
    t("EAE.encode", ea.encode, lambda: dict(x=xi), x=bad_img)
    t("EAE.decode", ea.decode, lambda: dict(z=z[:8]), z=bad_points)
    t("EAE.sample", ea.sample, lambda: dict(m=4, generator=0), m=bad_size, generator=bad_gen)
    t("VAE.forward", va, lambda: dict(x=xi, generator=0), x=bad_img, generator=bad_gen)
    t("VAE.encode", va.encode, lambda: dict(x=xi), x=bad_img)
    t("eae.eae_loss", eae.eae_loss, lambda: dict(model=ea, x=xi, generator=0), model=lambda v: {
        "None": None, "VAE": va}, x=bad_img, lam=bad_pos, k=bad_size)
    t("eae.vae_loss", eae.vae_loss, lambda: dict(model=va, x=xi, generator=0), model=lambda v: {
        "None": None, "EAE": ea}, x=bad_img, generator=bad_gen, beta=bad_pos)

    # ------------------------------------------------------------------- gau
    t("gau.swish_moments", gau.swish_moments, lambda: dict(gain=1.0, nodes=20), gain=bad_pos, nodes=bad_size)
    t("gau.magnitude_theory", gau.magnitude_theory, lambda: dict(n=16, s=8), n=bad_size, s=bad_size, gain=bad_pos)
    t("gau.magnitude_monte_carlo", gau.magnitude_monte_carlo, lambda: dict(n=8, d=16, s=8, reps=1, generator=0),
      n=bad_size, d=bad_size, e=lambda v: {k: w for k, w in bad_size(v).items() if k != "None"}, s=bad_size,
      reps=bad_size, gain=bad_pos, generator=bad_gen,
      dtype=lambda v: {"float16": torch.float16, "int": torch.int64, "string": "float32"})
    t("gau.ScaleOffset", gau.ScaleOffset, lambda: dict(dim=4), dim=bad_size)
    so = gau.ScaleOffset(4)
    xs = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
    t("ScaleOffset.forward", so, lambda: dict(z=xs), z=lambda v: {**bad_tensor(v), "wrong dim": v[..., :3]})
    t("gau.GAU", gau.GAU, lambda: dict(d=4, e=8, s=4), d=bad_size, s=bad_size,
      e=lambda v: {k: w for k, w in bad_size(v).items() if k != "None"})
    t("gau.GAUBlock", gau.GAUBlock, lambda: dict(d=4, e=8, s=4), alpha=bad_pos)
    t("gau.MultiHeadAttention", gau.MultiHeadAttention, lambda: dict(d=4, heads=2), d=bad_size,
      heads=lambda v: {**bad_size(v), "not dividing d": 3})
    t("gau.StdBlock", gau.StdBlock, lambda: dict(d=4, heads=2), ffn_mult=bad_size, alpha=bad_pos)
    mask = torch.ones(2, 6, dtype=torch.bool)
    bad_seq = lambda v: {**bad_tensor(v), "wrong dim": v[..., :3], "2-d": v[0]}  # noqa: E731
    bad_mask = lambda v: {"float": v.float(), "wrong shape": v[:, :3], "None row": v & False}  # noqa: E731
    for nm, mod in (("GAU", gau.GAU(4, 8, 4)), ("MultiHeadAttention", gau.MultiHeadAttention(4, 2)),
                    ("GAUBlock", gau.GAUBlock(4, 8, 4)), ("StdBlock", gau.StdBlock(4, 2))):
        t(f"{nm}.forward", mod, lambda: dict(x=xs, mask=mask), x=bad_seq, mask=bad_mask,
          causal=lambda v: {"string": "yes", "None": None, "int": 1})
    t("gau.SequenceModel", gau.SequenceModel, lambda: dict(vocab=5, length=6, d=8, layers=1, s=4),
      vocab=bad_size, length=bad_size, d=bad_size, layers=bad_size, kind=bad_option, heads=bad_size, s=bad_size,
      seed=bad_seed)
    sm = gau.SequenceModel(vocab=5, length=6, d=8, layers=1, s=4)
    tok = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(0))
    bad_tok = lambda v: {"float": v.double(), "out of range": v + 5, "negative": v - 5,  # noqa: E731
                         "too long": torch.cat([v, v], 1), "1-d": v[0], "empty": v[:0], "None": None}
    t("SequenceModel.forward", sm, lambda: dict(tokens=tok), tokens=bad_tok)
    t("gau.init_weights", gau.init_weights, lambda: dict(model=gau.GAU(4, 8, 4), generator=0),
      model=lambda v: {"None": None, "function": lambda x: x}, generator=bad_gen, scheme=bad_option,
      gain=bad_pos, deepnorm_beta=bad_pos)
    t("gau.count_parameters", gau.count_parameters, lambda: dict(model=sm), model=lambda v: {"None": None, "int": 3})
    t("gau.residual_ratios", gau.residual_ratios, lambda: dict(model=sm, tokens=tok), tokens=bad_tok,
      model=lambda v: {"None": None, "GAU": gau.GAU(4, 8, 4)})
    t("gau.reversal_batch", gau.reversal_batch, lambda: dict(batch_size=2, generator=torch.Generator(), length=6,
                                                             vocab=5),
      batch_size=bad_size, length=bad_size, vocab=lambda v: {**bad_size(v), "one": 1},
      generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"})
    rb = gau.reversal_batch(2, torch.Generator().manual_seed(0), length=6, vocab=5)
    t("gau.reversal_loss", gau.reversal_loss, lambda: dict(model=sm, batch=rb), model=lambda v: {"None": None},
      batch=bad_tok)
    t("gau.reversal_accuracy", gau.reversal_accuracy, lambda: dict(model=sm, n_seqs=4, seed=0),
      model=lambda v: {"None": None}, n_seqs=bad_size, seed=bad_seed)

    # ------------------------------------------------------------- positions
    pos = P.plain_positions(2, 6)
    t("positions.sinusoidal_encoding", P.sinusoidal_encoding, lambda: dict(positions=pos, dim=8),
      positions=lambda v: {**bad_tensor(v), "3-d": v[..., None]}, dim=lambda v: {**bad_size(v), "odd": 5},
      base=lambda v: {**bad_pos(v), "one": 1.0})
    t("positions.LearnedPositions", P.LearnedPositions, lambda: dict(size=8, dim=4), size=bad_size, dim=bad_size)
    lp = P.LearnedPositions(8, 4)
    t("LearnedPositions.forward", lp, lambda: dict(positions=pos), positions=lambda v: {
        "above size": v + 10, "negative": v - 3, "nan": _with(v, NAN), "None": None})
    qk = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    t("positions.apply_rope", P.apply_rope, lambda: dict(x=qk, positions=pos),
      x=lambda v: {**bad_tensor(v), "odd dim": v[..., :5], "1-d": v[0, 0]},
      positions=lambda v: {**bad_tensor(v), "wrong length": v[:, :3]}, base=lambda v: {**bad_pos(v), "one": 1.0})
    t("positions.plain_positions", P.plain_positions, lambda: dict(batch=2, length=6), batch=bad_size,
      length=bad_size, dtype=lambda v: {"int": torch.int64, "string": "float32"})
    t("positions.random_positions", P.random_positions, lambda: dict(batch=2, length=6, max_len=16,
                                                                      generator=torch.Generator()),
      batch=bad_size, length=lambda v: {**bad_size(v), "above max_len": 17}, max_len=bad_size,
      generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"})
    t("positions.equal_mean_positions", P.equal_mean_positions, lambda: dict(batch=2, length=6,
                                                                              generator=torch.Generator()),
      batch=bad_size, length=bad_size, generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"},
      mean=lambda v: {"negative": -1.0, "nan": NAN, "inf": INF, "string": "1"})
    t("positions.uniform_positions", P.uniform_positions, lambda: dict(batch=2, length=6, max_len=16),
      batch=bad_size, length=lambda v: {**bad_size(v), "above max_len": 17}, max_len=bad_size)
    t("positions.log_n_scale", P.log_n_scale, lambda: dict(n=8, train_length=4),
      n=lambda v: {**bad_size(v), "one": 1, "nan tensor": torch.tensor([NAN]), "zero tensor": torch.tensor([0.0]),
                   "int tensor": torch.tensor([1])},
      train_length=lambda v: {**_no_none(bad_size(v)), "one": 1})
    vv = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(1))
    bad_qkv = lambda v: {**bad_tensor(v), "1-d": v[0, 0], "wrong dim": v[..., :5]}  # noqa: E731
    t("positions.attention", P.attention, lambda: dict(q=qk, k=qk, v=vv, train_length=4), q=bad_qkv,
      k=lambda v: {**bad_qkv(v), "wrong length": v[:, :3, :]}, v=lambda v: {**bad_tensor(v), "wrong length":
                                                                           v[:, :3]},
      train_length=lambda v: {**_no_none(bad_size(v)), "one": 1})
    t("positions.attention_entropy", P.attention_entropy, lambda: dict(q=qk, k=qk), q=bad_qkv, k=bad_qkv,
      train_length=lambda v: {**_no_none(bad_size(v)), "one": 1})
    t("positions.entropy_curve", P.entropy_curve, lambda: dict(lengths=[4, 8], dim=4, queries=4),
      lengths=lambda v: {"empty": [], "zero": [0, 4], "float": [4.5], "None": None}, dim=bad_size,
      scale=bad_pos, queries=bad_size, train_length=lambda v: {**_no_none(bad_size(v)), "one": 1}, seed=bad_seed,
      dtype=lambda v: {"int": torch.int64, "float16": torch.float16})
    t("positions.gaussian_entropy_limit", P.gaussian_entropy_limit, lambda: dict(n=8.0, sigma=1.0),
      n=lambda v: {**bad_pos(v), "zero": 0.0}, sigma=bad_pos)
    for nm in ("first_marker_batch", "bucket_sort_batch", "even_pairs_batch"):
        t(f"positions.{nm}", getattr(P, nm), lambda: dict(batch=2, length=6, generator=torch.Generator()),
          batch=bad_size, length=bad_size, generator=lambda v: {"ok: None": None, "float": 1.5, "string": "0"})
    t("positions.PositionTransformer", P.PositionTransformer, lambda: dict(vocab=7, dim=8, heads=2, layers=1,
                                                                            max_len=16),
      vocab=bad_size, dim=lambda v: {**bad_size(v), "odd": 7}, heads=lambda v: {**bad_size(v), "not dividing": 3},
      layers=bad_size, pe=bad_option, max_len=bad_size, base=bad_pos, train_length=lambda v: {**_no_none(bad_size(v)),
                                                                                              "one": 1})
    torch.manual_seed(0)
    ptf = P.PositionTransformer(7, dim=8, heads=2, layers=1, max_len=16)
    ptok, ptgt = P.first_marker_batch(2, 6, torch.Generator().manual_seed(0))
    ppos = P.plain_positions(*ptok.shape)
    bad_ptok = lambda v: {"float": v.double(), "out of range": v + 50, "negative": v - 50,  # noqa: E731
                          "1-d": v[0], "empty": v[:0], "None": None}
    t("PositionTransformer.forward", ptf, lambda: dict(tokens=ptok, positions=ppos), tokens=bad_ptok,
      positions=lambda v: {**bad_tensor(v), "wrong length": v[:, :3], "wrong batch": v[:1].repeat(3, 1)})
    t("positions.task_loss", P.task_loss, lambda: dict(model=ptf, tokens=ptok, targets=ptgt, positions=ppos),
      model=lambda v: {"None": None}, tokens=bad_ptok, positions=bad_tensor,
      targets=lambda v: {"float": v.double(), "wrong shape": v[:1], "out of range": v + 50})
    t("positions.task_accuracy", P.task_accuracy, lambda: dict(model=ptf, task="first", length=6, n=4,
                                                                max_len=16, seed=0),
      model=lambda v: {"None": None}, task=bad_option, length=bad_size, positions=bad_option, n=bad_size,
      max_len=bad_size, seed=bad_seed)
    t("positions.make_sampler", P.make_sampler, lambda: dict(kind="plain", max_len=16), kind=bad_option,
      max_len=bad_size)

    # --------------------------------------------------------------- triples
    corpus = TR.generate_corpus(6, seed=0)
    voc = TR.build_vocab(corpus)
    sent = corpus[0]
    t("triples.generate_corpus", TR.generate_corpus, lambda: dict(n=4, seed=0, reuse=0.2, max_clauses=2),
      n=bad_size, seed=bad_seed, reuse=bad_prob, max_clauses=bad_size)
    t("triples.overlap_type", TR.overlap_type, lambda: dict(triples=sent.triples),
      triples=lambda v: {"None": None, "int": 3, "not triples": [("a",)]})
    t("triples.corpus_stats", TR.corpus_stats, lambda: dict(corpus=corpus),
      corpus=lambda v: {"empty": [], "None": None, "strings": ["a b"]})
    t("triples.build_vocab", TR.build_vocab, lambda: dict(corpora=corpus),
      corpora=lambda v: {"None": None, "strings": ["a b"], "int": 3})
    t("triples.find_span", TR.find_span, lambda: dict(tokens=sent.tokens, words=tuple(sent.tokens[:1])),
      tokens=lambda v: {"None": None, "string": "a b"}, words=lambda v: {"empty": (), "None": None, "string": "ab"})
    t("triples.encode_sentence", TR.encode_sentence, lambda: dict(tokens=sent.tokens, vocab=voc, max_len=64),
      tokens=lambda v: {"None": None, "string": "a b", "empty": []}, vocab=lambda v: {"None": None, "dict": {}},
      max_len=lambda v: {**bad_size(v), "too short": 2})
    t("triples.subject_labels", TR.subject_labels, lambda: dict(sent=sent, length=64),
      sent=lambda v: {"None": None, "string": "a"},
      length=lambda v: {**{k: w for k, w in bad_size(v).items() if k != "None"}, "too short": 2})
    subj = TR.find_span(sent.tokens, sent.triples[0][0])
    t("triples.object_labels", TR.object_labels, lambda: dict(sent=sent, subject=subj, length=64),
      sent=lambda v: {"None": None}, subject=lambda v: {"reversed": (v[1], v[0]), "negative": (-1, 0),
                                                        "beyond": (100, 101), "None": None, "floats": (0.0, 1.0)},
      length=lambda v: {**{k: w for k, w in bad_size(v).items() if k != "None"}, "too short": 2})
    pr = torch.tensor([0.9, 0.1, 0.2, 0.7], dtype=F64)
    t("triples.decode_spans", TR.decode_spans, lambda: dict(start=pr, end=pr.flip(0)),
      start=lambda v: {**bad_tensor(v), "above 1": v + 1, "2-d": v[None]},
      end=lambda v: {**bad_tensor(v), "wrong length": v[:2]}, t_start=bad_prob, t_end=bad_prob)
    t("triples.decode_gold", TR.decode_gold, lambda: dict(sent=sent), sent=lambda v: {"None": None, "string": "a"})
    t("triples.single_tag_capacity", TR.single_tag_capacity, lambda: dict(sent=sent),
      sent=lambda v: {"None": None, "string": "a"})
    t("triples.ConditionalLayerNorm", TR.ConditionalLayerNorm, lambda: dict(d=4, d_cond=6), d=bad_size,
      d_cond=bad_size, eps=bad_pos)
    cln = TR.ConditionalLayerNorm(4, 6)
    hh, cc = torch.randn(2, 5, 4), torch.randn(2, 6)
    t("ConditionalLayerNorm.forward", cln, lambda: dict(h=hh, c=cc), h=lambda v: {**bad_tensor(v), "wrong dim":
                                                                                v[..., :3]},
      c=lambda v: {**bad_tensor(v), "wrong dim": v[..., :3], "wrong batch": v[:1].repeat(3, 1)})
    t("triples.TripleModel", TR.TripleModel, lambda: dict(vocab_size=len(voc.itos), d=8, heads=2, layers=1, ffn=16,
                                                          max_len=16),
      vocab_size=bad_size, n_predicates=bad_size, d=bad_size, heads=lambda v: {**bad_size(v), "not dividing": 3},
      layers=bad_size, ffn=bad_size, max_len=bad_size, dropout=bad_prob, conditioning=bad_option,
      n_subject=bad_size, n_object=bad_size, pos_std=bad_pos, seed=bad_seed)
    tm = TR.TripleModel(len(voc.itos), d=8, heads=2, layers=1, ffn=16, max_len=64).eval()
    data = TR.TripleData(corpus, voc, max_len=64)
    drawn = data(2, torch.Generator().manual_seed(0))
    ids, msk = drawn["ids"], drawn["mask"]
    t("TripleModel.encode", tm.encode, lambda: dict(ids=ids, mask=msk), ids=bad_ptok,
      mask=lambda v: {"float": v.double(), "wrong shape": v[:, :3]})
    t("TripleData.batch", data.batch, lambda: dict(indices=[0, 1], start=[0, 0], end=[0, 1]),
      indices=lambda v: {"empty": [], "out of range": [0, 99], "negative": [-1, 0], "None": None},
      start=lambda v: {"wrong length": v[:1], "negative": [-1, 0]}, end=lambda v: {"before start": [-1, -1],
                                                                                   "beyond": [999, 999]})
    t("TripleData.subject_sets", data.subject_sets, lambda: dict(i=0),
      i=lambda v: {**{k: w for k, w in bad_size(v).items() if k != "zero"}, "beyond": 99})
    t("triples.window_starts", TR.window_starts, lambda: dict(length=40, max_len=16, stride=8), length=bad_size,
      max_len=bad_size, stride=lambda v: {**bad_size(v), "above max_len": 17})
    t("triples.window_coverage", TR.window_coverage, lambda: dict(corpus=corpus, max_len=16, stride=8),
      corpus=lambda v: {"empty": [], "None": None}, max_len=bad_size, stride=lambda v: {**bad_size(v), "above": 17})
    h = torch.randn(2, 64, 8)
    t("TripleModel.subject_logits", tm.subject_logits, lambda: dict(h=h), h=lambda v: {**bad_tensor(v), "wrong dim":
                                                                                     v[..., :3]})
    st, en = torch.tensor([0, 1]), torch.tensor([1, 2])
    t("TripleModel.object_logits", tm.object_logits, lambda: dict(h=h, start=st, end=en), h=bad_tensor,
      start=lambda v: {"float": v.double(), "out of range": v + 100, "negative": v - 5, "wrong length": v[:1]},
      end=lambda v: {"before start": v - 2, "out of range": v + 100})
    lg = torch.randn(2, 5, 3, dtype=F64)
    t("triples.pn_bce", TR.pn_bce, lambda: dict(logits=lg, target=(lg > 0).double(), n=2), logits=bad_tensor,
      target=lambda v: {**bad_tensor(v), "wrong shape": v[:1], "above 1": v + 2}, n=bad_size)
    t("triples.TripleData", TR.TripleData, lambda: dict(corpus=corpus, vocab=voc, max_len=64),
      corpus=lambda v: {"empty": [], "None": None}, vocab=lambda v: {"None": None}, max_len=lambda v: {
          **bad_size(v), "too short": 2}, truncate=lambda v: {"int": 1, "string": "yes", "None": None})
    t("triples.extract", TR.extract, lambda: dict(model=tm, corpus=corpus[:2], vocab=voc),
      model=lambda v: {"None": None}, corpus=lambda v: {"None": None, "strings": ["a"]}, vocab=lambda v: {"None": None},
      t_start=bad_prob, t_end=bad_prob, batch_size=bad_size, stride=lambda v: {**_not_none(bad_size(v)), "above max_len": 65})
    t("triples.predict_texts", TR.predict_texts, lambda: dict(model=tm, vocab=voc, schema=TR.Schema(TR.PREDICATES),
                                                              texts=["alice adler wrote the red river", ""]),
      texts=lambda v: {"None": None, "string": "a b", "ints": [1, 2]}, schema=lambda v: {"None": None, "tuple":
                                                                                      TR.PREDICATES},
      stride=lambda v: {**_not_none(bad_size(v)), "above max_len": 65})
    gold = [TR.decode_gold(s) for s in corpus]
    t("triples.prf", TR.prf, lambda: dict(pred=gold, gold=gold), pred=lambda v: {"wrong length": v[:2], "None": None},
      gold=lambda v: {"wrong length": v[:2], "None": None})
    t("triples.evaluate", TR.evaluate, lambda: dict(pred=gold, corpus=corpus),
      pred=lambda v: {"wrong length": v[:2], "None": None}, corpus=lambda v: {"None": None, "empty": []})

    # -------------------------------------------------------------- samplers
    den = SM.gmm_denoiser(gm2)
    x0 = gm2.sample(16, 2) * 5
    sg = ode.sigma_grid(4, 0.05, 5.0)
    t("samplers.gmm_denoiser", SM.gmm_denoiser, lambda: dict(gm=gm2), gm=bad_gmm)
    t("samplers.gmm_denoiser(...)", den, lambda: dict(x=x0, sigma=0.5), x=bad_points, sigma=bad_pos)
    t("samplers.denoiser_from_score", SM.denoiser_from_score, lambda: dict(score_fn=ode.gmm_score_fn(gm2)),
      score_fn=lambda v: {"None": None, "int": 3})
    t("samplers.fast_coordinates", SM.fast_coordinates, lambda: dict(sigma=0.5, ref_std=0.5), sigma=bad_pos,
      ref_std=lambda v: {"negative": -1.0, "nan": NAN, "string": "1"})
    bad_sig = lambda v: {**bad_tensor(v), "increasing": v.flip(0), "one level": v[:1],  # noqa: E731
                         "negative": -v, "2-d": v[None]}
    den_bad = bad_fn()
    common = dict(denoiser=den_bad, x=bad_tensor, sigmas=bad_sig, callback=lambda v: {"int": 3})
    for nm in ("sample_multistep", "sample_dpmpp_2m", "sample_dpmpp_3m", "sample_unipc", "sample_lms"):
        t(f"samplers.{nm}", getattr(SM, nm), lambda: dict(denoiser=den, x=x0, sigmas=sg), **common)
    t("samplers.sample_multistep options", SM.sample_multistep, lambda: dict(denoiser=den, x=x0, sigmas=sg),
      order=lambda v: {**bad_size(v), "huge": 99}, ref_mean=lambda v: {"nan": NAN, "string": "0",
                                                                      "wrong shape": torch.zeros(3, dtype=F64)},
      ref_std=lambda v: {"negative": -1.0, "nan": NAN, "string": "1"})
    t("samplers.sample_lms order", SM.sample_lms, lambda: dict(denoiser=den, x=x0, sigmas=sg),
      order=lambda v: {**bad_size(v), "huge": 99})
    t("samplers.sample_dpm_adaptive", SM.sample_dpm_adaptive, lambda: dict(denoiser=den, x=x0, sigma_max=5.0,
                                                                            sigma_min=0.05, rtol=0.05),
      denoiser=den_bad, x=bad_tensor, sigma_max=lambda v: {**bad_pos(v), "below min": 0.01}, sigma_min=bad_pos,
      rtol=bad_pos, atol=lambda v: {"negative": -1.0, "nan": NAN}, method=bad_option, h_init=bad_pos,
      safety=lambda v: {**bad_pos(v), "above 1": 1.5}, max_steps=bad_size)
    for nm in ("sample_euler_ancestral", "sample_dpmpp_2m_sde"):
        t(f"samplers.{nm}", getattr(SM, nm), lambda: dict(denoiser=den, x=x0, sigmas=sg, generator=0), **common,
          generator=bad_gen, eta=bad_pos, s_noise=bad_pos)
    t("samplers.sample_heun_churn", SM.sample_heun_churn, lambda: dict(denoiser=den, x=x0, sigmas=sg, generator=0,
                                                                        s_churn=1.0),
      **common, generator=bad_gen, s_churn=bad_pos, s_noise=bad_pos,
      s_tmin=lambda v: {"negative": -1.0, "nan": NAN, "string": "0"},
      s_tmax=lambda v: {"nan": NAN, "string": "1", "below s_tmin": -1.0})
    t("samplers.reference_solution", SM.reference_solution, lambda: dict(denoiser=den, x=x0[:2], sigma_max=5.0,
                                                                          sigma_min=0.05, rtol=1e-4, atol=1e-4),
      denoiser=den_bad, x=bad_tensor, sigma_max=lambda v: {**bad_pos(v), "below min": 0.01}, sigma_min=bad_pos,
      rtol=bad_pos, atol=bad_pos)
    t("samplers.pathwise_error", SM.pathwise_error, lambda: dict(x=x0, x_ref=x0 + 0.1), x=bad_tensor,
      x_ref=lambda v: {**bad_tensor(v), "wrong shape": v[:3]})
    t("samplers.warped_grid", SM.warped_grid, lambda: dict(params=[0.0] * 8, n=5),
      params=lambda v: {"nan": [NAN] * 8, "None": None, "empty": [], "string": "a"}, n=bad_size,
      sigma_min=bad_pos, sigma_max=lambda v: {**bad_pos(v), "below min": 1e-3},
      dtype=lambda v: {"int": torch.int64, "float16": torch.float16})
    t("samplers.karras_warp", SM.karras_warp, lambda: dict(k=8), k=bad_size, sigma_min=bad_pos,
      sigma_max=lambda v: {**bad_pos(v), "below min": 1e-3}, rho=bad_pos)
    return T


# ------------------------------------------------------------------------------ running
#: The functions that compute per sample, and their batch arguments: an empty batch (all of them
#: of shape ``(0, ...)`` at once) must give an empty result, as torch does.
BATCH_ARGS: dict[str, tuple[str, ...]] = {
    **{f"GaussianMixture.{m}": ("x",) for m in ("log_prob", "score", "score_divergence", "responsibilities",
                                               "score_at")},
    **{f"GaussianMixture.{m}": ("x_t",) for m in ("posterior", "denoise", "eps_prediction")},
    "TimeMLP.forward": ("x",), "UNet.forward": ("x",),
    "ddpm.q_sample": ("x0", "noise"), "ddpm.posterior": ("x_t", "x0"), "ddpm.x0_from_eps": ("x_t", "eps"),
    "ddpm.eps_from_x0": ("x_t", "x0"), "ddpm.ddpm_step": ("x_t", "eps"), "ddpm.ddim_step": ("x_t", "eps"),
    "ddpm.exact_eps_model(...)": ("x",), "ddpm.sample": ("x_T",),
    "SDE.marginal": ("x0",), "SDE.perturb": ("x0",), "SDE.prior_log_prob": ("z",), "SDE.exact_score(...)": ("x",),
    "sde.forward_sample": ("x0",), "sde.reverse_step": ("x",), "sde.reverse_sample": ("x",), "sde.pc_sample": ("x",),
    "sde.pf_ode_drift": ("x",), "sde.ddim_ode_drift": ("x",), "sde.reverse_kernel_gaussian": ("x_next",),
    "PrecondEps.forward": ("x",),
    **{f"ode.{m}": ("x",) for m in ("gmm_score_fn(...)", "heat_log_density", "heat_velocity", "heat_drift",
                                    "pf_ode_drift", "vp_to_heat", "sample_euler", "sample_heun", "sample_rk4",
                                    "sample_adaptive", "batch_jacobian", "divergence", "gaussian_log_prob",
                                    "log_likelihood")},
    "ode.solve_adaptive": ("y0",), "ScoreNet.forward": ("x",),
    "GaussianNoise.corrupt": ("x0",), "GaussianNoise.forward": ("x0", "noise"), "GaussianNoise.invert": ("x0", "x_t"),
    "GaussianNoise.reuse": ("x0", "x_t"), "HeatBlur.degrade": ("x0",), "heat_blur": ("x",),
    "eps_model_estimator(...)": ("x",), "posterior_estimator(...)": ("x",), "unified.sample": ("x_T",),
    **{f"samplers.{m}": ("x",) for m in ("gmm_denoiser(...)", "sample_multistep", "sample_dpmpp_2m",
                                         "sample_dpmpp_3m", "sample_unipc", "sample_lms", "sample_dpm_adaptive",
                                         "sample_euler_ancestral", "sample_dpmpp_2m_sde", "sample_heun_churn",
                                         "reference_solution")},
}


def _first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    return None


def _is_empty_like(out, valid) -> bool:
    """``out`` (or its first tensor) has shape ``(0, *valid.shape[1:])``."""
    o, v = _first_tensor(out), _first_tensor(valid)
    if o is None or v is None:
        return True  # not a tensor result (e.g. a posterior object): nothing to compare
    return o.ndim >= 1 and o.shape[0] == 0 and o.shape[1:] == v.shape[1:]
def _finite(out) -> bool:
    if isinstance(out, torch.Tensor):
        return not out.is_floating_point() or bool(torch.isfinite(out).all())
    if isinstance(out, float):
        return math.isfinite(out)
    if isinstance(out, (tuple, list)):
        return all(_finite(o) for o in out)
    if isinstance(out, dict):
        return all(_finite(o) for o in out.values())
    return True


def _consume(out):
    """Evaluate lazy results (a returned estimator/score function is not called here)."""
    return out


def run_case(fn: Callable, kwargs: dict, timeout: int) -> tuple[str, str, object]:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        out = _consume(fn(**kwargs))
    except _Timeout:
        return "hang", f"no answer within {timeout} s", None
    except MemoryError as e:
        return "oom", f"MemoryError: {str(e)[:100]}", None
    except (ValueError, TypeError, FloatingPointError) as e:  # fit's divergence check is explicit too
        return "clear", f"{type(e).__name__}: {e}", None
    except Exception as e:  # noqa: BLE001 - the point is to classify every other exception
        return "obscure", f"{type(e).__name__}: {str(e)[:200]}", None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return ("accepted" if _finite(out) else "nonfinite"), "", out


def _outcome_ok(outcome: str, msg: str, out, valid_out, empty: bool) -> tuple[str, str]:
    """The outcome of an input that torch accepts (an ``ok:`` case)."""
    if outcome == "clear":
        return "refused", msg
    if outcome == "accepted" and empty and not _is_empty_like(out, valid_out):
        o = _first_tensor(out)
        return "not empty", f"result of shape {None if o is None else tuple(o.shape)}"
    return ("ok" if outcome == "accepted" else outcome), msg


def run(timeout: int = 20, only: str = "") -> dict:
    torch.manual_seed(0)
    results, baseline_errors = [], []
    for tg in targets() + chapter_targets():
        if only and only not in tg.name:
            continue
        valid = tg.kwargs()
        outcome, msg, valid_out = run_case(tg.fn, dict(valid), timeout)
        if outcome != "accepted":
            baseline_errors.append({"target": tg.name, "outcome": outcome, "message": msg})
            continue
        batch = BATCH_ARGS.get(tg.name, ())
        cases = []
        for arg, maker in tg.args.items():
            for label, bad in maker(valid.get(arg)).items():
                if label == "empty batch" and batch == (arg,):
                    continue  # the same call as the empty-batch case below, which must be accepted
                cases.append((arg, label, {**valid, arg: bad}))
        if batch:
            cases.append(("+".join(batch), "ok: empty batch", {**valid, **{a: valid[a][:0] for a in batch}}))
        for arg, label, kw in cases:
            outcome, msg, out = run_case(tg.fn, kw, timeout)
            if label.startswith("ok:"):
                outcome, msg = _outcome_ok(outcome, msg, out, valid_out, "empty" in label)
            results.append({"target": tg.name, "arg": arg, "bad": label, "outcome": outcome, "message": msg})
    counts = Counter(r["outcome"] for r in results)
    return {"cases": len(results), "counts": dict(counts), "baseline_errors": baseline_errors, "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="", help="write every case and its outcome here")
    ap.add_argument("--timeout", type=int, default=20)
    ap.add_argument("--memory-gb", type=float, default=6.0, help="address-space limit (0: none)")
    ap.add_argument("--only", default="", help="run the targets whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.memory_gb > 0:  # a case that tries to allocate far too much fails here instead of swapping the machine
        import resource

        lim = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    rep = run(args.timeout, args.only)
    for b in rep["baseline_errors"]:
        print(f"BASELINE FAILS {b['target']}: {b['outcome']} {b['message']}")
    for r in rep["results"]:
        if r["outcome"] not in ("clear", "ok"):
            print(f"{r['outcome']:9s} {r['target']}({r['arg']} = {r['bad']}) {r['message']}")
    print(f"{rep['cases']} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["counts"].items())))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
