"""Full runs of chapter 5 (EAE): the digit models over seeds, and the VAE's beta.

The training recipe :func:`train_digit_model` and the sample score :func:`sample_fd` are the
ones the chapter's notebook calls for its own seed-0 run, so seed 0 here is the notebook's run
(to float rounding, which depends on the number of torch threads).

* ``seeds`` — AE+BN (lambda = 0), EAE (lambda = 1) and the VAE for beta in {0.25, 0.5, 1},
  each over seeds 0, 1, 2: the Fréchet distance of 2000 decoded prior samples to the held-out
  digits, and the held-out reconstruction error.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from . import experiment

__all__ = ["train_digit_model", "sample_fd", "heldout_sse", "DIGITS"]

# the chapter's settings (section 3 of the notebook)
DIGITS: dict[str, Any] = dict(steps=1000, batch=256, lr=1e-3, latent=8, samples=2000, sample_seed=123)


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
    r"""Train one model of chapter 5 on ``x_train`` ``(N, 1, 8, 8)`` and return ``(model in eval
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


SEEDS = dict(DIGITS, seeds=[0, 1, 2], lam=1.0, betas=[0.25, 0.5, 1.0], threads=2)


@experiment("ch5", "seeds", config=SEEDS,
            description="8x8 digits: AE+BN, EAE (lambda 1), VAE (beta 0.25/0.5/1) over 3 seeds; FD of prior samples")
def seeds(cfg: dict) -> dict:
    from .. import data, metrics

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
            fd, _ = sample_fd(model, x_test, n=cfg["samples"], seed=cfg["sample_seed"] + seed)
            out[label][str(seed)] = {"fd": fd, "sse": heldout_sse(model, x_test), "seconds": round(seconds, 1)}
    return {"arms": out, "fd_floor": metrics.digit_frechet_distance(x_train, x_test)}
