r"""The laboratory: a Gaussian mixture with closed-form everything under linear-Gaussian noise.

A mixture :math:`p(x_0)=\sum_k\pi_k\,\mathcal N(\mu_k,\Sigma_k)` pushed through the corruption
:math:`x_t = A x_0 + b\,\varepsilon` (``A`` a scalar :math:`\bar\alpha_t` or a matrix such as a
blur) stays a mixture, with components :math:`\mathcal N(A\mu_k,\ A\Sigma_kA^\top+b^2I)`
(equation :eq:`lab-noised` of chapter 0). Its score, the divergence of its score, the posterior
:math:`p(x_0\mid x_t)` (again a mixture) and Tweedie's denoiser are all closed forms. Every
chapter checks its samplers, losses and likelihoods against this oracle.

Computations run in the mixture's dtype (float64 by default); results are returned in the
dtype and on the device of the input points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .utils import check_points, check_positive, check_tensor, make_generator

#: Size guard of :meth:`GaussianMixture.sample`: at most this many float elements, counted as
#: ``n * (d * d + 2 * d)`` (the gathered ``(n, d, d)`` Cholesky factors, the normals and the
#: result): 2**30 elements are 8 GiB in float64. A larger request raises before allocating.
MAX_SAMPLE_ELEMENTS = 2**30

__all__ = ["GaussianMixture", "MixturePosterior", "lab_1d", "lab_2d"]


def _as_param(name: str, value, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be array-like of numbers: {err}") from err
    if not value.is_floating_point():
        value = value.to(dtype)
    value = value.to(dtype)
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


class GaussianMixture:
    r"""Gaussian mixture :math:`\sum_k \pi_k \mathcal N(\mu_k, \Sigma_k)` in :math:`\mathbb R^d`.

    Args:
        weights: ``(K,)`` non-negative mixture weights summing to one.
        means: ``(K, d)`` component means (``(K,)`` is read as ``d = 1``).
        covs: component covariances, one of ``(K,)`` isotropic variances
            :math:`s_k^2` (so :math:`\Sigma_k=s_k^2I`), ``(K, d)`` diagonal variances, or
            ``(K, d, d)`` full symmetric positive-definite matrices.
        dtype: dtype of the stored parameters (float64 for exact checks).
    """

    def __init__(self, weights, means, covs, *, dtype: torch.dtype = torch.float64):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64 (Cholesky and eigh need them), got {dtype}")
        weights = _as_param("weights", weights, dtype)
        means = _as_param("means", means, dtype)
        covs = _as_param("covs", covs, dtype)
        if weights.ndim != 1 or weights.numel() == 0:
            raise ValueError(f"weights must have shape (K,), got {tuple(weights.shape)}")
        K = weights.shape[0]
        if (weights < 0).any():
            raise ValueError("weights must be non-negative")
        if abs(weights.sum().item() - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got sum {weights.sum().item():.8g}")
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or means.shape[0] != K:
            raise ValueError(f"means must have shape (K={K}, d), got {tuple(means.shape)}")
        d = means.shape[1]
        if covs.ndim == 1:
            if covs.shape[0] != K:
                raise ValueError(f"covs of shape (K,) must have K={K} entries, got {covs.shape[0]}")
            if (covs <= 0).any():
                raise ValueError("covs (variances) must be > 0")
            covs = covs[:, None, None] * torch.eye(d, dtype=dtype)
        elif covs.ndim == 2:
            if tuple(covs.shape) != (K, d):
                raise ValueError(f"diagonal covs must have shape (K, d)=({K}, {d}), got {tuple(covs.shape)}")
            if (covs <= 0).any():
                raise ValueError("covs (variances) must be > 0")
            covs = torch.diag_embed(covs)
        elif covs.ndim == 3:
            if tuple(covs.shape) != (K, d, d):
                raise ValueError(f"full covs must have shape (K, d, d)=({K}, {d}, {d}), got {tuple(covs.shape)}")
            if not torch.allclose(covs, covs.transpose(-1, -2), atol=1e-10, rtol=1e-8):
                raise ValueError("covs must be symmetric")
        else:
            raise ValueError(f"covs must have shape (K,), (K, d) or (K, d, d), got {tuple(covs.shape)}")
        chol, info = torch.linalg.cholesky_ex(covs)
        if (info != 0).any():
            raise ValueError("covs must be positive definite (every variance > 0)")
        self.weights, self.means, self.covs = weights, means, covs
        self._chol = chol
        self._prec = torch.cholesky_inverse(chol)
        self._logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        self.dtype = dtype

    # ------------------------------------------------------------------ basic properties
    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, dtype={self.dtype})"

    def mean(self) -> torch.Tensor:
        """Mean of the mixture, shape ``(d,)``."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Covariance of the mixture (law of total covariance), shape ``(d, d)``."""
        m = self.mean()
        dm = self.means - m
        return torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum(
            "k,ki,kj->ij", self.weights, dm, dm
        )

    # ------------------------------------------------------------------ internals
    def _prep(self, name: str, x) -> tuple[torch.Tensor, torch.dtype, torch.device]:
        x = check_points(name, x, self.dim)  # an empty batch (0, d) gives empty results
        return x.to(self.dtype), x.dtype, x.device

    def _on(self, device) -> tuple[torch.Tensor, ...]:
        return tuple(
            t.to(device) for t in (self.weights, self.means, self._prec, self._logdet)
        )

    def _terms(self, x: torch.Tensor):
        """Per-component log densities ``(n, K)``, responsibilities ``(n, K)`` and
        component scores :math:`g_k = -\\Sigma_k^{-1}(x-\\mu_k)`, shape ``(n, K, d)``."""
        w, mu, prec, logdet = self._on(x.device)
        diff = x[:, None, :] - mu  # (n, K, d)
        g = -torch.einsum("kij,nkj->nki", prec, diff)
        maha = -(diff * g).sum(-1)
        comp = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        joint = comp + torch.log(w.clamp_min(1e-300))
        logp = torch.logsumexp(joint, dim=1)
        resp = torch.exp(joint - logp[:, None])
        return logp, resp, g

    # ------------------------------------------------------------------ densities
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density :math:`\\log p(x)`; ``x`` of shape ``(n, d)`` -> ``(n,)``."""
        x, dt, _ = self._prep("x", x)
        return self._terms(x)[0].to(dt)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities :math:`r_k(x)`, ``(n, d) -> (n, K)``."""
        x, dt, _ = self._prep("x", x)
        return self._terms(x)[1].to(dt)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        r"""Score :math:`\nabla_x\log p(x)=\sum_k r_k(x)\,g_k(x)`, ``(n, d) -> (n, d)``."""
        x, dt, _ = self._prep("x", x)
        _, r, g = self._terms(x)
        return (r[..., None] * g).sum(1).to(dt)

    def score_divergence(self, x: torch.Tensor) -> torch.Tensor:
        r"""Divergence of the score (Laplacian of :math:`\log p`), ``(n, d) -> (n,)``.

        :math:`\Delta\log p=\sum_k r_k\,[-\mathrm{tr}\,\Sigma_k^{-1}+\|g_k\|^2]-\|\bar g\|^2`
        with :math:`\bar g=\sum_k r_k g_k`.
        """
        x, dt, _ = self._prep("x", x)
        _, r, g = self._terms(x)
        prec = self._prec.to(x.device)
        tr = torch.diagonal(prec, dim1=-2, dim2=-1).sum(-1)  # (K,)
        gbar = (r[..., None] * g).sum(1)
        div = (r * (-tr + (g * g).sum(-1))).sum(1) - (gbar * gbar).sum(-1)
        return div.to(dt)

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Cumulative distribution function of a 1-D mixture; ``x`` any shape -> same shape."""
        if self.dim != 1:
            raise ValueError(f"cdf is defined for d = 1 only, this mixture has d = {self.dim}")
        x = check_tensor("x", x)
        dt = x.dtype
        xx = x.to(self.dtype)
        mu = self.means[:, 0].to(x.device)
        sd = self.covs[:, 0, 0].sqrt().to(x.device)
        z = (xx[..., None] - mu) / sd
        return (torch.special.ndtr(z) * self.weights.to(x.device)).sum(-1).to(dt)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | int | None = None,
        *,
        return_labels: bool = False,
    ):
        """Draw ``n`` points, shape ``(n, d)`` in the mixture's dtype (and labels ``(n,)``).

        ``n * (d * d + 2 * d) <= MAX_SAMPLE_ELEMENTS`` (8 GiB of float64): a larger ``n`` raises
        ``ValueError`` before anything is allocated; draw in chunks instead."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if n * (self.dim * self.dim + 2 * self.dim) > MAX_SAMPLE_ELEMENTS:
            raise ValueError(f"n = {n} is too large for one draw in dimension {self.dim}: it needs "
                             f"n * (d^2 + 2d) = {n * (self.dim * self.dim + 2 * self.dim):.2e} elements, above the "
                             f"size guard MAX_SAMPLE_ELEMENTS = 2**30; draw in chunks")
        g = make_generator(generator)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=g)
        z = torch.randn(n, self.dim, generator=g, dtype=self.dtype)
        x = self.means[labels] + torch.einsum("nij,nj->ni", self._chol[labels], z)
        return (x, labels) if return_labels else x

    # ------------------------------------------------------------------ corruption
    def _linear(self, a, name: str = "a") -> torch.Tensor:
        """Return the corruption's signal map as a ``(d, d)`` matrix."""
        if isinstance(a, torch.Tensor) and a.ndim == 2:
            if tuple(a.shape) != (self.dim, self.dim):
                raise ValueError(f"{name} as a matrix must have shape (d, d)=({self.dim}, {self.dim}), got {tuple(a.shape)}")
            return a.to(self.dtype).cpu()
        if isinstance(a, torch.Tensor):
            if a.numel() != 1:
                raise ValueError(f"{name} must be a scalar or a (d, d) matrix, got shape {tuple(a.shape)}")
            a = a.item()
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise TypeError(f"{name} must be a finite real scalar or a (d, d) tensor, got {a!r}")
        return float(a) * torch.eye(self.dim, dtype=self.dtype)

    def noised(self, a=1.0, b=0.0) -> GaussianMixture:
        r"""Law of :math:`x_t = a\,x_0 + b\,\varepsilon`, :math:`\varepsilon\sim\mathcal N(0,I)`.

        ``a`` is a scalar (:math:`\bar\alpha_t`) or a ``(d, d)`` matrix (e.g. a blur); ``b``
        a scalar :math:`\ge 0` (:math:`\bar\beta_t`). Components become
        :math:`\mathcal N(a\mu_k,\ a\Sigma_k a^\top + b^2 I)` (equation :eq:`lab-noised`).
        """
        A = self._linear(a)
        b = check_positive("b", b, allow_zero=True)
        means = self.means @ A.T
        covs = A @ self.covs @ A.T + b**2 * torch.eye(self.dim, dtype=self.dtype)
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        return GaussianMixture(self.weights, means, covs, dtype=self.dtype)

    def posterior(self, x_t: torch.Tensor, a=1.0, b=1.0) -> MixturePosterior:
        r"""Exact posterior :math:`p(x_0\mid x_t)` for :math:`x_t=a x_0+b\varepsilon`, ``b > 0``.

        It is a mixture per point: weights :math:`r_k(x_t)` (responsibilities under the noised
        law), component means :math:`\mu_k+G_k(x_t-a\mu_k)` and covariances
        :math:`\Sigma_k-G_k a\Sigma_k` with gain :math:`G_k=\Sigma_k a^\top(a\Sigma_k a^\top+b^2I)^{-1}`
        (equation :eq:`lab-posterior`; the Kalman form, stable for tiny :math:`\Sigma_k`).
        ``x_t``: ``(n, d)``.
        """
        x, dt, dev = self._prep("x_t", x_t)
        A = self._linear(a)
        b = check_positive("b", b)
        noised = self.noised(A, b)
        r = noised.responsibilities(x)  # (n, K)
        gain = self.covs @ A.T @ noised._prec  # (K, d, d)
        resid = x[:, None, :] - noised.means.to(dev)  # (n, K, d)
        means = self.means.to(dev) + torch.einsum("kij,nkj->nki", gain.to(dev), resid)
        covs = self.covs - gain @ A @ self.covs
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        return MixturePosterior(r.to(dt), means.to(dt), covs.to(device=dev, dtype=dt))

    def score_at(self, x: torch.Tensor, a=1.0, b=0.0) -> torch.Tensor:
        r"""Score of the noised law :math:`x=a\,x_0+b\,\varepsilon` at ``x`` (equation :eq:`lab-score`),
        with ``a``, ``b`` scalars **or one value per point** (tensors of shape ``(n,)``).

        The fast path of :meth:`noised` ``(a, b).score(x)``: with the eigendecomposition
        :math:`\Sigma_k=U_k\Lambda_kU_k^\top` computed once, :math:`C_k=U_k(a^2\Lambda_k+b^2)U_k^\top`,
        so every noise level costs one rotation and a division — no new mixture, no Cholesky.
        Use it in samplers and losses that evaluate many noise levels. ``x``: ``(n, d)`` -> ``(n, d)``.
        """
        x, dt, dev = self._prep("x", x)
        n = x.shape[0]
        a = self._per_point("a", a, n, dev)
        b = self._per_point("b", b, n, dev)
        if (b < 0).any():
            raise ValueError("b must be >= 0")
        if ((a == 0) & (b == 0)).any():
            raise ValueError("a = b = 0 is the point mass at 0: the noised law has no density (need a != 0 or b > 0)")
        if not hasattr(self, "_eig"):
            lam, U = torch.linalg.eigh(self.covs)
            self._eig = (lam, U, torch.einsum("kd,kde->ke", self.means, U))
        lam, U, mu_rot = (t.to(dev) for t in self._eig)
        var = a[:, None, None] ** 2 * lam + b[:, None, None] ** 2  # (n, K, d): eigenvalues of C_k
        z = torch.einsum("nd,kde->nke", x, U) - a[:, None, None] * mu_rot
        zs = z / var
        logw = torch.log(self.weights.to(dev).clamp_min(1e-300))
        r = torch.softmax(-0.5 * ((z * zs).sum(-1) + torch.log(var).sum(-1)) + logw, dim=1)
        return (-torch.einsum("nke,kde->nd", r[..., None] * zs, U)).to(dt)

    def _per_point(self, name: str, v, n: int, dev) -> torch.Tensor:
        if isinstance(v, torch.Tensor):
            if v.dtype == torch.bool or v.is_complex():
                raise TypeError(f"{name} must be a real tensor, got dtype {v.dtype}")
            if v.numel() == 1:
                v = v.reshape(()).to(device=dev, dtype=self.dtype).expand(n)
            elif v.shape != (n,):
                raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(v.shape)}")
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            return v.to(device=dev, dtype=self.dtype)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"{name} must be a finite real scalar or a ({n},) tensor, got {v!r}")
        return torch.full((n,), float(v), dtype=self.dtype, device=dev)

    def denoise(self, x_t: torch.Tensor, a=1.0, b=1.0) -> torch.Tensor:
        r"""Tweedie's denoiser :math:`E[x_0\mid x_t]`, ``(n, d) -> (n, d)``.

        For scalar ``a`` this equals :math:`(x_t+b^2\nabla\log p_t(x_t))/a` (equation :eq:`lab-tweedie`).
        """
        return self.posterior(x_t, a, b).mean()

    def eps_prediction(self, x_t: torch.Tensor, a=1.0, b=1.0) -> torch.Tensor:
        r"""Exact noise predictor :math:`\epsilon^*(x_t)=E[\varepsilon\mid x_t]=-b\,\nabla\log p_t(x_t)`.

        ``x_t``: ``(n, d)`` -> ``(n, d)``; ``b > 0``.
        """
        b = check_positive("b", b)
        return -b * self.noised(a, b).score(x_t)


@dataclass
class MixturePosterior:
    r"""A batch of mixtures, one per conditioning point: the exact :math:`p(x_0\mid x_t)`.

    Attributes:
        weights: ``(n, K)`` responsibilities.
        means: ``(n, K, d)`` component means.
        covs: ``(K, d, d)`` component covariances (shared by all points).
    """

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    def mean(self) -> torch.Tensor:
        """Posterior mean, ``(n, d)``."""
        return (self.weights[..., None] * self.means).sum(1)

    def cov(self) -> torch.Tensor:
        """Posterior covariance (law of total covariance), ``(n, d, d)``."""
        m = self.mean()
        dm = self.means - m[:, None, :]
        within = torch.einsum("nk,kij->nij", self.weights, self.covs)
        between = torch.einsum("nk,nki,nkj->nij", self.weights, dm, dm)
        return within + between

    def sample(self, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """One exact draw :math:`x_0\\sim p(x_0\\mid x_t)` per point, ``(n, d)``."""
        g = make_generator(generator, self.weights.device)
        n, K, d = self.means.shape
        labels = torch.multinomial(self.weights.to(torch.float64), 1, generator=g)[:, 0]
        # symmetric square root: robust when a posterior covariance is nearly singular
        evals, evecs = torch.linalg.eigh(self.covs.to(torch.float64))
        chol = evecs * evals.clamp_min(0).sqrt()[..., None, :]
        z = torch.randn(n, d, generator=g, dtype=torch.float64, device=self.means.device)
        x = self.means[torch.arange(n), labels].to(torch.float64) + torch.einsum("nij,nj->ni", chol[labels], z)
        return x.to(self.means.dtype)


def lab_1d(dtype: torch.dtype = torch.float64) -> GaussianMixture:
    r"""The book's 1-D laboratory law :math:`0.3\,\mathcal N(-2,0.5^2)+0.7\,\mathcal N(1.5,0.3^2)`."""
    return GaussianMixture([0.3, 0.7], [[-2.0], [1.5]], [0.5**2, 0.3**2], dtype=dtype)


def lab_2d(dtype: torch.dtype = torch.float64) -> GaussianMixture:
    r"""The book's 2-D laboratory law: weights .2/.5/.3, means (-2,0), (1.5,1), (0.5,-2),
    isotropic standard deviations .4/.3/.5."""
    return GaussianMixture(
        [0.2, 0.5, 0.3],
        [[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]],
        [0.4**2, 0.3**2, 0.5**2],
        dtype=dtype,
    )
