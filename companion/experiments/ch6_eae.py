"""Full runs of chapter 6 (EAE): the digit models over seeds, and the VAE's beta.

The training recipe :func:`train_digit_model` and the sample score :func:`sample_fd` are the
ones the chapter's notebook calls for its own seed-0 run, so seed 0 here is the notebook's run
(to float rounding, which depends on the number of torch threads).

* ``seeds`` — AE+BN (lambda = 0), EAE (lambda = 1) and the VAE for beta in {0.25, 0.5, 1},
  each over seeds 0, 1, 2: the Fréchet distance and the inception-style score of 2000 decoded
  prior samples (``score_model``), the same two for the ex-post Gaussian-mixture sampler, the
  Gaussianity gap of held-out and of training codes, and the held-out reconstruction error.
* ``lambda_sweep`` — EAE with lambda in {0.25, 0.5, 2, 4} over seeds 0, 1, 2, scored the same way
  (lambda = 0 and 1 are the AE+BN and EAE arms of ``seeds``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from . import experiment

__all__ = ["train_digit_model", "sample_fd", "heldout_sse", "code_sample", "gap_scores", "score_model", "DIGITS"]

# the chapter's settings (section 3 of the notebook)
DIGITS: dict[str, Any] = dict(steps=1000, batch=256, lr=1e-3, latent=8, samples=2000, sample_seed=123,
                              gmm_components=10)


def train_digit_model(
    kind: str,
    x_train: torch.Tensor,
    *,
    lam: float = 0.0,
    beta: float = 1.0,
    seed: int = 0,
    steps: int = 1000,
    batch: int = 256,
    lr: float = 1e-3,
    latent: int = 8,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[torch.nn.Module, float]:
    r"""Train one model of chapter 6 on ``x_train`` ``(N, 1, 8, 8)`` and return ``(model in eval
    mode, seconds)``.

    ``kind="eae"``: :class:`~companion.eae.EAE` with loss :func:`~companion.eae.eae_loss` and weight
    ``lam`` (``0`` gives AE + BN); ``kind="vae"``: :class:`~companion.eae.VAE` with
    :func:`~companion.eae.vae_loss` and weight ``beta``. The initial weights come from ``seed``
    (the global torch generator is seeded inside a forked RNG state, so the caller's state is left
    alone); batches and noise from ``companion.train.fit(seed=seed)``.
    """
    from .. import eae
    from ..train import fit

    if kind not in ("eae", "vae"):
        raise ValueError(f"kind must be 'eae' or 'vae', got {kind!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "eae":
            model = eae.EAE(latent=latent)
            loss_fn = lambda m, x, g: eae.eae_loss(m, x, lam=lam)
        else:
            model = eae.VAE(latent=latent)
            loss_fn = lambda m, x, g: eae.vae_loss(m, x, g, beta=beta)
    t = time.perf_counter()
    res = fit(model, loss_fn, x_train, steps=steps, batch_size=batch, lr=lr, seed=seed,
              progress=progress, desc=desc or f"{kind} seed {seed}")
    return res.model.eval(), time.perf_counter() - t


def sample_fd(model: torch.nn.Module, x_test: torch.Tensor, *, n: int = 2000,
              seed: int = 123) -> tuple[float, torch.Tensor]:
    """Decode ``n`` prior draws (seed ``seed``) and return ``(Fréchet distance to x_test, samples)``
    (:func:`companion.metrics.digit_frechet_distance`)."""
    from .. import metrics

    samples = model.sample(n, generator=seed)
    return metrics.digit_frechet_distance(samples, x_test), samples


def heldout_sse(model: torch.nn.Module, x_test: torch.Tensor) -> float:
    """Mean squared reconstruction error per image on ``x_test`` (the VAE decodes its posterior mean)."""
    from .. import eae

    with torch.no_grad():
        if isinstance(model, eae.VAE):
            rec = model.decode(model.encode(x_test)[0])
        else:
            rec, _ = model(x_test)
    return ((rec - x_test) ** 2).sum((1, 2, 3)).mean().item()


def code_sample(model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Codes ``(n, latent)`` of ``x`` as the prior sees them: the batch-normalized code of an EAE
    (eval mode), a draw of the VAE's posterior (mean plus its noise, from ``generator``)."""
    from .. import eae

    with torch.no_grad():
        if isinstance(model, eae.VAE):
            mean, log_var = model.encode(x)
            return mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator)
        return eae.codes(model, x)


def gap_scores(model: torch.nn.Module, x_train: torch.Tensor, x_test: torch.Tensor, *, seed: int = 5) -> dict[str, float]:
    """Gaussianity gap (:func:`companion.eae.gaussianity_gap`, k = 1) of the codes of the held-out
    digits (``gap_test``) and of the training digits (``gap_train``: the mean over disjoint blocks
    of the training codes of the held-out size, so both estimates see the same ``n``)."""
    from .. import eae

    g = torch.Generator().manual_seed(seed)
    m = x_test.shape[0]
    z_test = code_sample(model, x_test, g).double()
    z_train = code_sample(model, x_train, g).double()
    blocks = [z_train[i: i + m] for i in range(0, z_train.shape[0] - m + 1, m)]
    return {"gap_test": eae.gaussianity_gap(z_test).item(),
            "gap_train": sum(eae.gaussianity_gap(b).item() for b in blocks) / len(blocks)}


def gap_floor(m: int, d: int, reps: int = 3, seed: int = 7) -> float:
    """Mean Gaussianity gap estimate of ``reps`` exact N(0, I_d) samples of size ``m`` (truth 0):
    the estimator's own offset at that size."""
    from .. import eae

    g = torch.Generator().manual_seed(seed)
    return sum(eae.gaussianity_gap(torch.randn(m, d, generator=g, dtype=torch.float64)).item() for _ in range(reps)) / reps


def score_model(model: torch.nn.Module, x_train: torch.Tensor, x_test: torch.Tensor, *, n: int = 2000,
                seed: int = 123, gmm_components: int = 10) -> dict[str, float]:
    """Every score of one trained model of chapter 6: Fréchet distance ``fd`` and inception-style
    score ``is`` of ``n`` decoded prior draws (seed ``seed``), the same (``fd_gmm``, ``is_gmm``) for
    :class:`~companion.eae.ExPostGMM` with ``gmm_components`` components fitted to the training
    codes (EM seed 0, draws from ``seed``), the held-out reconstruction error ``sse`` and the
    Gaussianity gaps of :func:`gap_scores`."""
    from .. import eae, metrics

    fd, samples = sample_fd(model, x_test, n=n, seed=seed)
    gmm = eae.ExPostGMM(model, x_train, components=gmm_components, seed=0)
    gmm_samples = gmm.sample(n, generator=seed)
    return {"fd": fd, "is": metrics.digit_inception_score(samples),
            "fd_gmm": metrics.digit_frechet_distance(gmm_samples, x_test),
            "is_gmm": metrics.digit_inception_score(gmm_samples),
            "sse": heldout_sse(model, x_test), **gap_scores(model, x_train, x_test)}


def _reference_scores(x_train: torch.Tensor, x_test: torch.Tensor, latent: int) -> dict[str, float]:
    from .. import metrics

    return {"fd_floor": metrics.digit_frechet_distance(x_train, x_test),
            "is_test": metrics.digit_inception_score(x_test),
            "classifier_accuracy": metrics.digit_classifier(0)[1],
            "gap_floor": gap_floor(x_test.shape[0], latent)}


SEEDS = dict(DIGITS, seeds=[0, 1, 2], lam=1.0, betas=[0.25, 0.5, 1.0], threads=2)


@experiment("ch6", "seeds", config=SEEDS,
            description="8x8 digits: AE+BN, EAE (lambda 1), VAE (beta 0.25/0.5/1) over 3 seeds; FD, IS (prior and GMM), gaps")
def seeds(cfg: dict) -> dict:
    from .. import data

    x_train, _ = data.digits("train")
    x_test, _ = data.digits("test")
    arms = [("AE+BN", "eae", dict(lam=0.0)), ("EAE", "eae", dict(lam=cfg["lam"]))]
    arms += [(f"VAE beta={b:g}", "vae", dict(beta=b)) for b in cfg["betas"]]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label, kind, kw in arms:
        out[label] = {}
        for seed in cfg["seeds"]:
            model, seconds = train_digit_model(kind, x_train, seed=seed, steps=cfg["steps"], batch=cfg["batch"],
                                               lr=cfg["lr"], latent=cfg["latent"], desc=f"{label}, seed {seed}", **kw)
            scores = score_model(model, x_train, x_test, n=cfg["samples"], seed=cfg["sample_seed"] + seed,
                                 gmm_components=cfg["gmm_components"])
            out[label][str(seed)] = {**scores, "seconds": round(seconds, 1)}
    return {"arms": out, **_reference_scores(x_train, x_test, cfg["latent"])}


LAMBDA_SWEEP = dict(DIGITS, seeds=[0, 1, 2], lams=[0.25, 0.5, 2.0, 4.0], threads=2)


@experiment("ch6", "lambda_sweep", config=LAMBDA_SWEEP,
            description="8x8 digits: EAE with lambda 0.25/0.5/2/4 over 3 seeds; FD, IS, gaps, reconstruction")
def lambda_sweep(cfg: dict) -> dict:
    from .. import data

    x_train, _ = data.digits("train")
    x_test, _ = data.digits("test")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for lam in cfg["lams"]:
        out[f"{lam:g}"] = {}
        for seed in cfg["seeds"]:
            model, seconds = train_digit_model("eae", x_train, lam=lam, seed=seed, steps=cfg["steps"], batch=cfg["batch"],
                                               lr=cfg["lr"], latent=cfg["latent"], desc=f"lambda {lam:g}, seed {seed}")
            scores = score_model(model, x_train, x_test, n=cfg["samples"], seed=cfg["sample_seed"] + seed,
                                 gmm_components=cfg["gmm_components"])
            out[f"{lam:g}"][str(seed)] = {**scores, "seconds": round(seconds, 1)}
    return {"lams": out}
