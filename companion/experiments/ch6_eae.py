"""Full runs of chapter 6 (EAE): the digit models over training seeds, and the weights λ and β.

The training recipe :func:`train_digit_model` and the scores :func:`score_model` are the ones the
chapter's notebook calls for its own seed-0 run, so seed 0 here is the notebook's run: to the last
digit when the notebook trains with the same number of torch threads (``threads`` of the
configuration), since the order of float sums depends on it.

Every sample metric follows :mod:`companion.core.sample_quality`: the decoded samples of three sample
seeds (449 each) are pooled, so the Fréchet distance (FD) is computed on 1347 digits, with a
bootstrap interval over the samples and the floor measured at the same size.

* ``seeds`` — AE+BN (λ = 0), EAE (λ = 1) and the VAE for β in {0.25, 0.5, 1}, each over training
  seeds 0-4: pooled FD (bootstrap interval, per-sample-seed spread), inception-style score, class
  balance and memorisation of decoded prior samples; the same FD and score for the ex-post
  Gaussian-mixture sampler; the Gaussianity gap of held-out and of training codes; the held-out
  reconstruction error; and, per training seed, paired bootstraps of the comparisons the chapter
  makes.
* ``lambda_sweep`` — EAE with λ in {0.25, 0.5, 2, 4} over the same five seeds, scored the same way
  (λ = 0 and 1 are the AE+BN and EAE arms of ``seeds``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import torch

from .runner import experiment

if TYPE_CHECKING:
    from ..sequence.eae import EAE, VAE

__all__ = ["train_digit_model", "prior_samples", "heldout_sse", "code_sample", "gap_scores", "score_model",
           "DIGITS"]

# the chapter's settings (section 3 of the notebook): three sample seeds of 449 digits (the held-out
# set's size) pooled to 1347, one fewer than the training digits, so the floor is at the same size
DIGITS: dict[str, Any] = dict(steps=1000, batch=256, lr=1e-3, latent=8, sample_seeds=[123, 124, 125],
                              n_per_seed=449, n_boot=400, gmm_components=10)


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
) -> tuple[EAE | VAE, float]:
    r"""Train one model of chapter 6 on ``x_train`` ``(N, 1, 8, 8)`` and return ``(model in eval
    mode, seconds)``.

    ``kind="eae"``: :class:`~companion.sequence.eae.EAE` with loss :func:`~companion.sequence.eae.eae_loss` and weight
    ``lam`` (``0`` gives AE + BN); ``kind="vae"``: :class:`~companion.sequence.eae.VAE` with
    :func:`~companion.sequence.eae.vae_loss` and weight ``beta``. The initial weights come from ``seed``
    (the global torch generator is seeded inside a forked RNG state, so the caller's state is left
    alone); batches and noise from ``companion.core.train.fit(seed=seed)``.
    """
    from ..core.train import fit
    from ..sequence import eae

    if kind not in ("eae", "vae"):
        raise ValueError(f"kind must be 'eae' or 'vae', got {kind!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: EAE | VAE
        if kind == "eae":
            model = eae.EAE(latent=latent)
            loss_fn = lambda m, x, g: eae.eae_loss(m, x, lam=lam)
        else:
            model = eae.VAE(latent=latent)
            loss_fn = lambda m, x, g: eae.vae_loss(m, x, g, beta=beta)
    t = time.perf_counter()
    res = fit(model, loss_fn, x_train, steps=steps, batch_size=batch, lr=lr, seed=seed,
              progress=progress, desc=desc or f"{kind} seed {seed}")
    return cast("EAE | VAE", res.model.eval()), time.perf_counter() - t


def prior_samples(model: EAE | VAE, sample_seeds: list[int], n: int) -> list[torch.Tensor]:
    r"""Decode ``n`` prior draws :math:`\varepsilon\sim\mathcal N(0,I)` per sample seed: one batch
    ``(n, 1, 8, 8)`` per seed (the pool of :func:`companion.core.sample_quality.pooled_report`). Two
    models of the same latent size decode the same draws, so their pools are paired."""
    return [model.sample(n, generator=s) for s in sample_seeds]


def heldout_sse(model: EAE | VAE, x_test: torch.Tensor) -> float:
    """Mean squared reconstruction error per image on ``x_test`` (the VAE decodes its posterior mean)."""
    from ..sequence import eae

    with torch.no_grad():
        if isinstance(model, eae.VAE):
            rec = model.decode(model.encode(x_test)[0])
        else:
            rec, _ = model(x_test)
    return ((rec - x_test) ** 2).sum((1, 2, 3)).mean().item()


def code_sample(model: EAE | VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Codes ``(n, latent)`` of ``x`` as the prior sees them: the batch-normalized code of an EAE
    (eval mode), a draw of the VAE's posterior (mean plus its noise, from ``generator``)."""
    from ..sequence import eae

    with torch.no_grad():
        if isinstance(model, eae.VAE):
            mean, log_var = model.encode(x)
            return mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator)
        return eae.codes(model, x)


def gap_scores(model: EAE | VAE, x_train: torch.Tensor, x_test: torch.Tensor, *, seed: int = 5) -> dict[str, float]:
    """Gaussianity gap (:func:`companion.sequence.eae.gaussianity_gap`, k = 1) of the codes of the held-out
    digits (``gap_test``) and of the training digits (``gap_train``: the mean over disjoint blocks
    of the training codes of the held-out size, so both estimates see the same ``n``)."""
    from ..sequence import eae

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
    from ..sequence import eae

    g = torch.Generator().manual_seed(seed)
    return sum(eae.gaussianity_gap(torch.randn(m, d, generator=g, dtype=torch.float64)).item() for _ in range(reps)) / reps


def score_model(model: EAE | VAE, x_train: torch.Tensor, x_test: torch.Tensor, *, floor_fd: float,
                sample_seeds: list[int], n_per_seed: int = 449, n_boot: int = 400, boot_seed: int = 0,
                gmm_components: int = 10, pools: dict | None = None) -> dict[str, Any]:
    """Every score of one trained model of chapter 6, under the protocol of
    :mod:`companion.core.sample_quality`.

    Prior samples (:func:`prior_samples`, pooled over ``sample_seeds``):
    :func:`~companion.core.sample_quality.pooled_report` against ``floor_fd`` (the floor at the pooled
    size) gives ``fd``, ``ratio``, ``fd_per_seed``, ``fd_seed_sd``, ``class_p`` and
    ``memorisation``; :func:`~companion.core.sample_quality.bootstrap_fd` (``n_boot`` replicates, seed
    ``boot_seed``) gives the standard deviation ``fd_boot_sd`` and the 95 % interval ``fd_lo``,
    ``fd_hi`` = ``fd`` ∓ 1.96 ``fd_boot_sd`` (a normal interval: the replicates themselves sit above
    ``fd``, because resampling with replacement repeats samples and FD grows as the number of
    distinct samples falls); ``is`` is the inception-style score of the pool. The same FD, interval and
    score with codes from :class:`~companion.sequence.eae.ExPostGMM` (``gmm_components`` components, EM seed
    0, draws from the same seeds): ``fd_gmm``, ``fd_gmm_lo``, ``fd_gmm_hi``, ``is_gmm``. Then the
    held-out reconstruction error ``sse`` and the Gaussianity gaps of :func:`gap_scores`. A dict
    passed as ``pools`` receives the two pools (``'prior'``, ``'mixture'``: lists of batches)."""
    from ..core import metrics
    from ..core import sample_quality as Q
    from ..sequence import eae

    fr = Q.digit_features(x_test)

    def fd_with_interval(pool: list[torch.Tensor], key: str) -> dict[str, float]:
        f = Q.digit_features(torch.cat(pool))
        fd, sd = Q.fd_features(f, fr), float(Q.bootstrap_fd(f, fr, n_boot=n_boot, generator=boot_seed).std())
        return {key: fd, f"{key}_lo": fd - 1.96 * sd, f"{key}_hi": fd + 1.96 * sd, f"{key}_boot_sd": sd}

    pool = prior_samples(model, sample_seeds, n_per_seed)
    rep = Q.pooled_report(pool, train=x_train, test=x_test, floor_fd=floor_fd)
    gmm = eae.ExPostGMM(model, x_train, components=gmm_components, seed=0)
    gmm_pool = [gmm.sample(n_per_seed, generator=s) for s in sample_seeds]
    if pools is not None:
        pools.update(prior=pool, mixture=gmm_pool)
    return {**fd_with_interval(pool, "fd"), "ratio": rep["ratio"], "fd_per_seed": rep["fd_per_seed"],
            "fd_seed_sd": rep["fd_seed_sd"], "class_p": rep["class_p"], "memorisation": rep["memorisation"],
            "is": metrics.digit_inception_score(torch.cat(pool)),
            **fd_with_interval(gmm_pool, "fd_gmm"), "is_gmm": metrics.digit_inception_score(torch.cat(gmm_pool)),
            "sse": heldout_sse(model, x_test), **gap_scores(model, x_train, x_test)}


def _reference_scores(cfg: dict, x_train: torch.Tensor, x_test: torch.Tensor) -> dict[str, Any]:
    from ..core import metrics
    from ..core import sample_quality as Q

    n_pool = cfg["n_per_seed"] * len(cfg["sample_seeds"])
    return {"floor": Q.floor(n_pool, train=x_train, test=x_test, n_boot=cfg["n_boot"]),
            "is_test": metrics.digit_inception_score(x_test),
            "classifier_accuracy": metrics.digit_classifier(0)[1],
            "gap_floor": gap_floor(x_test.shape[0], cfg["latent"])}


def _train_and_score(cfg: dict, kind: str, seed: int, floor_fd: float, x_train: torch.Tensor, x_test: torch.Tensor,
                     desc: str, pools: dict | None = None, **kw) -> dict[str, Any]:
    model, seconds = train_digit_model(kind, x_train, seed=seed, steps=cfg["steps"], batch=cfg["batch"],
                                       lr=cfg["lr"], latent=cfg["latent"], desc=desc, **kw)
    scores = score_model(model, x_train, x_test, floor_fd=floor_fd, sample_seeds=cfg["sample_seeds"],
                         n_per_seed=cfg["n_per_seed"], n_boot=cfg["n_boot"], boot_seed=seed,
                         gmm_components=cfg["gmm_components"], pools=pools)
    return {**scores, "seconds": round(seconds, 1)}


#: the comparisons the chapter makes, (A, B): a paired bootstrap of FD(A) - FD(B) per training seed;
#: "A mixture" means model A with ex-post mixture codes
COMPARISONS = [["EAE", "AE+BN"], ["EAE", "VAE beta=0.25"], ["EAE", "VAE beta=1"], ["AE+BN mixture", "EAE"]]

SEEDS = dict(DIGITS, seeds=[0, 1, 2, 3, 4], lam=1.0, betas=[0.25, 0.5, 1.0], comparisons=COMPARISONS, threads=2)


@experiment("ch6", "seeds", config=SEEDS,
            description="8x8 digits: AE+BN, EAE (lambda 1), VAE (beta 0.25/0.5/1) over 5 seeds; pooled FD with "
                        "bootstrap intervals and floor, IS, memorisation (prior and GMM), gaps, paired comparisons")
def seeds(cfg: dict) -> dict:
    from ..core import data
    from ..core import sample_quality as Q

    x_train, _ = data.digits("train")
    x_test, _ = data.digits("test")
    ref = _reference_scores(cfg, x_train, x_test)
    arms = [("AE+BN", "eae", dict(lam=0.0)), ("EAE", "eae", dict(lam=cfg["lam"]))]
    arms += [(f"VAE beta={b:g}", "vae", dict(beta=b)) for b in cfg["betas"]]
    out: dict[str, dict[str, dict[str, Any]]] = {label: {} for label, _, _ in arms}
    comparisons: dict[str, dict[str, dict[str, Any]]] = {f"{a} | {b}": {} for a, b in cfg["comparisons"]}
    for seed in cfg["seeds"]:
        pools = {}
        for label, kind, kw in arms:
            got: dict = {}
            out[label][str(seed)] = _train_and_score(cfg, kind, seed, ref["floor"]["fd"], x_train, x_test,
                                                     f"{label}, seed {seed}", pools=got, **kw)
            pools[label], pools[f"{label} mixture"] = got["prior"], got["mixture"]
        for a, b in cfg["comparisons"]:
            comparisons[f"{a} | {b}"][str(seed)] = Q.compare(pools[a], pools[b], test=x_test, n_boot=cfg["n_boot"],
                                                             generator=seed)
    return {"arms": out, "comparisons": comparisons, **ref}


LAMBDA_SWEEP = dict(DIGITS, seeds=[0, 1, 2, 3, 4], lams=[0.25, 0.5, 2.0, 4.0], threads=2)


@experiment("ch6", "lambda_sweep", config=LAMBDA_SWEEP,
            description="8x8 digits: EAE with lambda 0.25/0.5/2/4 over 5 seeds; pooled FD with bootstrap intervals, "
                        "IS, gaps, reconstruction")
def lambda_sweep(cfg: dict) -> dict:
    from ..core import data
    from ..core import sample_quality as Q

    x_train, _ = data.digits("train")
    x_test, _ = data.digits("test")
    fl = Q.floor(cfg["n_per_seed"] * len(cfg["sample_seeds"]), train=x_train, test=x_test, n_boot=cfg["n_boot"])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for lam in cfg["lams"]:
        out[f"{lam:g}"] = {}
        for seed in cfg["seeds"]:
            out[f"{lam:g}"][str(seed)] = _train_and_score(cfg, "eae", seed, fl["fd"], x_train, x_test,
                                                          f"lambda {lam:g}, seed {seed}", lam=lam)
    return {"lams": out, "floor": fl}
