"""The laboratory against independent oracles: autograd, quadrature, scipy and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from companion.core.gmm import GaussianMixture, lab_1d, lab_2d


def random_mixture(K=3, d=3, seed=0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.2
    mu = 2 * torch.randn(K, d, generator=g, dtype=torch.float64)
    L = torch.randn(K, d, d, generator=g, dtype=torch.float64) * 0.4
    covs = L @ L.transpose(-1, -2) + 0.2 * torch.eye(d, dtype=torch.float64)
    return GaussianMixture(w / w.sum(), mu, covs)


@pytest.fixture(params=["lab_1d", "lab_2d", "full_3d"])
def mix(request):
    return {"lab_1d": lab_1d, "lab_2d": lab_2d, "full_3d": lambda: random_mixture()}[request.param]()


# ----------------------------------------------------------------------------- densities
def test_log_prob_matches_scipy(mix):
    x = mix.sample(200, 1)
    ref = np.log(sum(
        w * stats.multivariate_normal(m, c).pdf(x.numpy())
        for w, m, c in zip(mix.weights.numpy(), mix.means.numpy(), mix.covs.numpy(), strict=True)
    ))
    np.testing.assert_allclose(mix.log_prob(x).numpy(), np.atleast_1d(ref), rtol=0, atol=1e-10)


def test_density_integrates_to_one_1d():
    m = lab_1d()
    val, err = integrate.quad(lambda u: math.exp(m.log_prob(torch.tensor([[u]], dtype=torch.float64)).item()), -20, 20, limit=200)
    assert abs(val - 1) < 1e-9


def test_score_is_gradient_of_log_prob(mix):
    x = mix.sample(64, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    torch.testing.assert_close(mix.score(x.detach()), grad, rtol=0, atol=1e-10)


def test_score_divergence_is_trace_of_score_jacobian(mix):
    x = mix.sample(16, 3).requires_grad_(True)
    s = mix.score(x)
    # points are independent, so d/dx_j of sum_n s_j(x_n) gives each point's Jacobian diagonal
    trace = sum(torch.autograd.grad(s[:, j].sum(), x, retain_graph=True)[0][:, j] for j in range(mix.dim))
    torch.testing.assert_close(mix.score_divergence(x.detach()), trace, rtol=0, atol=1e-9)


def test_cdf_matches_integrated_density():
    m = lab_1d()
    grid = torch.linspace(-8, 8, 200001, dtype=torch.float64)
    pdf = m.log_prob(grid[:, None]).exp()
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(pdf, grid)])
    torch.testing.assert_close(m.cdf(grid), cum, rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- sampling
def test_sample_moments_within_standard_errors(mix):
    n = 200_000
    x = mix.sample(n, 4)
    cov = mix.covariance()
    se = torch.sqrt(torch.diagonal(cov) / n)
    z = (x.mean(0) - mix.mean()) / se
    assert z.abs().max() < 4.5, z  # 4.5 SE over at most 3 coordinates: false alarm < 1e-4
    # variance: at n = 2e5 the SE of a sample variance of these mixtures is a few 0.1 %; 2 % is > 5 SE
    rel = (torch.diagonal(torch.cov(x.T).reshape(mix.dim, mix.dim)) - torch.diagonal(cov)) / torch.diagonal(cov)
    assert rel.abs().max() < 0.02


def test_sampling_is_deterministic_given_seed():
    m = lab_2d()
    torch.testing.assert_close(m.sample(10, 7), m.sample(10, 7))
    assert not torch.equal(m.sample(10, 7), m.sample(10, 8))


def test_samples_follow_the_cdf_ks():
    m = lab_1d()
    x = m.sample(50_000, 5)[:, 0].numpy()
    res = stats.kstest(x, lambda u: m.cdf(torch.as_tensor(u)).numpy())
    assert res.pvalue > 1e-4


# ----------------------------------------------------------------------------- corruption
@pytest.mark.parametrize("a,b", [(0.8, 0.6), (1.0, 2.0), (0.05, 0.999)])
def test_noised_law_matches_monte_carlo(a, b):
    m = lab_1d()
    g = torch.Generator().manual_seed(11)
    x0 = m.sample(100_000, g)
    xt = a * x0 + b * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    res = stats.kstest(xt[:, 0].numpy(), lambda u: m.noised(a, b).cdf(torch.as_tensor(u)).numpy())
    assert res.pvalue > 1e-4


def test_noised_with_matrix_matches_moments():
    m = lab_2d()
    A = torch.tensor([[0.7, 0.2], [-0.1, 0.5]], dtype=torch.float64)
    n = m.noised(A, 0.3)
    torch.testing.assert_close(n.mean(), A @ m.mean(), rtol=0, atol=1e-12)
    torch.testing.assert_close(n.covariance(), A @ m.covariance() @ A.T + 0.09 * torch.eye(2, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def _grid_posterior_1d(m, xt, a, b):
    """Brute-force Bayes on a fine grid: p(x0|xt) ∝ p(x0) N(xt; a x0, b^2)."""
    grid = torch.linspace(-10, 10, 400_001, dtype=torch.float64)
    logw = m.log_prob(grid[:, None]) - 0.5 * ((xt - a * grid) / b) ** 2
    w = torch.exp(logw - logw.max())
    w = w / torch.trapezoid(w, grid)
    mean = torch.trapezoid(w * grid, grid)
    var = torch.trapezoid(w * (grid - mean) ** 2, grid)
    return mean, var


@pytest.mark.parametrize("xt", [-1.7, 0.3, 2.2])
@pytest.mark.parametrize("a,b", [(0.9, 0.43), (0.3, 0.95)])
def test_posterior_matches_grid_bayes_1d(xt, a, b):
    m = lab_1d()
    post = m.posterior(torch.tensor([[xt]], dtype=torch.float64), a, b)
    mean, var = _grid_posterior_1d(m, xt, a, b)
    assert abs(post.mean()[0, 0].item() - mean.item()) < 1e-8
    assert abs(post.cov()[0, 0, 0].item() - var.item()) < 1e-8


def test_posterior_with_matrix_matches_grid_bayes_2d():
    m = lab_2d()
    A = torch.tensor([[0.6, 0.3], [0.0, 0.4]], dtype=torch.float64)
    b = 0.5
    xt = torch.tensor([[0.4, -0.3]], dtype=torch.float64)
    u = torch.linspace(-6, 6, 801, dtype=torch.float64)
    X, Y = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    logw = m.log_prob(pts) - 0.5 * ((xt - pts @ A.T) ** 2).sum(1) / b**2
    w = torch.exp(logw - logw.max())
    w = w / w.sum()
    mean = (w[:, None] * pts).sum(0)
    cov = (w[:, None, None] * (pts - mean)[:, :, None] * (pts - mean)[:, None, :]).sum(0)
    post = m.posterior(xt, A, b)
    torch.testing.assert_close(post.mean()[0], mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(post.cov()[0], cov, rtol=0, atol=1e-6)


def test_posterior_sampling_reproduces_the_prior():
    """x_t ~ p_t then x0 ~ p(x0|x_t) gives x0 ~ p_0 exactly (the joint law); checked by KS."""
    m = lab_1d()
    a, b = 0.5, math.sqrt(1 - 0.25)
    xt = m.noised(a, b).sample(50_000, 3)
    x0 = m.posterior(xt, a, b).sample(4)
    assert stats.kstest(x0[:, 0].numpy(), lambda u: m.cdf(torch.as_tensor(u)).numpy()).pvalue > 1e-4


def test_tweedie_and_eps_prediction(mix):
    a, b = 0.6, 0.8
    xt = mix.noised(a, b).sample(100, 9)
    via_score = (xt + b**2 * mix.noised(a, b).score(xt)) / a
    torch.testing.assert_close(mix.denoise(xt, a, b), via_score, rtol=0, atol=1e-10)
    torch.testing.assert_close(mix.eps_prediction(xt, a, b), (xt - a * mix.denoise(xt, a, b)) / b, rtol=0, atol=1e-10)


def test_score_at_matches_noised_score_scalar_and_per_point(mix):
    x = mix.sample(50, 12)
    torch.testing.assert_close(mix.score_at(x, 0.6, 0.8), mix.noised(0.6, 0.8).score(x), rtol=0, atol=1e-10)
    g = torch.Generator().manual_seed(13)
    a = torch.rand(50, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(50, generator=g, dtype=torch.float64) + 0.05
    loop = torch.cat([mix.noised(a[i].item(), b[i].item()).score(x[i : i + 1]) for i in range(50)])
    torch.testing.assert_close(mix.score_at(x, a, b), loop, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"a must be a scalar or have shape \(50,\)"):
        mix.score_at(x, torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="b must be >= 0"):
        mix.score_at(x, 1.0, -1.0)


def test_float32_inputs_give_float32_outputs():
    m = lab_2d()
    x = m.sample(8, 0).float()
    for out in (m.log_prob(x), m.score(x), m.score_divergence(x), m.denoise(x, 0.5, 0.5)):
        assert out.dtype == torch.float32
    torch.testing.assert_close(m.score(x).double(), m.score(x.double()), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,exc,msg",
    [
        (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], covs=[1.0, 1.0]), ValueError, "weights must sum to 1"),
        (dict(weights=[1.5, -0.5], means=[[0.0], [1.0]], covs=[1.0, 1.0]), ValueError, "non-negative"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=[1.0, 0.0]), ValueError, "covs"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=[1.0, -2.0]), ValueError, "covs"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0], [2.0]], covs=[1.0, 1.0]), ValueError, "means"),
        (dict(weights=[0.5, 0.5], means=[[0.0, 0.0], [1.0, 1.0]], covs=[[1.0, 1.0, 1.0]] * 2), ValueError, "covs"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]]), ValueError, "positive definite"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 0.5], [0.0, 1.0]]]), ValueError, "symmetric"),
        (dict(weights=[1.0], means=[[float("nan")]], covs=[1.0]), ValueError, "means"),
        (dict(weights="abc", means=[[0.0]], covs=[1.0]), TypeError, "weights"),
    ],
)
def test_constructor_validation(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        GaussianMixture(**kwargs)


def test_input_validation():
    m = lab_2d()
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        m.log_prob(torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        m.score(np.zeros((5, 2)))
    with pytest.raises(TypeError, match="floating"):
        m.score(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        m.score(torch.full((1, 2), float("nan")))
    with pytest.raises(ValueError, match="b must be finite and > 0"):
        m.posterior(torch.zeros(1, 2, dtype=torch.float64), 1.0, 0.0)
    with pytest.raises(ValueError, match="b must be finite and >= 0"):
        m.noised(1.0, -1.0)
    with pytest.raises(ValueError, match=r"a as a matrix must have shape \(d, d\)"):
        m.noised(torch.eye(3, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="d = 1 only"):
        m.cdf(torch.zeros(3))
    with pytest.raises(ValueError, match="n must be a positive int"):
        m.sample(0)


def test_score_at_and_dtypes_refuse_degenerate_input():
    gm = lab_2d()
    x = gm.sample(5, 0)
    with pytest.raises(ValueError, match="no density"):
        gm.score_at(x, 0.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        gm.score_at(x, torch.tensor(float("nan")), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        gm.score_at(x, 1.0, torch.tensor(float("inf")))
    # a 0-d tensor time is a scalar, and gives the same score as the float
    assert torch.allclose(gm.score_at(x, torch.tensor(0.8), torch.tensor(0.6)), gm.score_at(x, 0.8, 0.6))
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        lab_2d(dtype=torch.float16)


def test_laboratories_are_the_documented_laws():
    """The chapters describe these laws in words; their moments in closed form pin every parameter."""
    m1 = lab_1d()
    assert torch.allclose(m1.weights, torch.tensor([0.3, 0.7], dtype=torch.float64))
    assert torch.allclose(m1.means[:, 0], torch.tensor([-2.0, 1.5], dtype=torch.float64))
    assert torch.allclose(m1.covs[:, 0, 0], torch.tensor([0.25, 0.09], dtype=torch.float64))
    assert abs(m1.mean().item() - (0.3 * -2.0 + 0.7 * 1.5)) < 1e-12
    m2 = lab_2d()
    assert torch.allclose(m2.weights, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    assert torch.allclose(m2.means, torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], dtype=torch.float64))
    eye = torch.eye(2, dtype=torch.float64)
    assert torch.allclose(m2.covs, torch.stack([0.16 * eye, 0.09 * eye, 0.25 * eye]))
    assert lab_2d(torch.float32).dtype == torch.float32


def test_noised_covariances_are_exactly_symmetric():
    """A Sigma A^T in floating point is symmetric only up to rounding (7e-15 here); noised() symmetrises
    it, so Cholesky and eigh see an exactly symmetric matrix."""
    g = torch.Generator().manual_seed(0)
    L = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    cov = L @ L.transpose(-1, -2) + torch.eye(6, dtype=torch.float64)
    gm = GaussianMixture([0.5, 0.5], torch.zeros(2, 6, dtype=torch.float64), cov)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    raw = A @ gm.covs @ A.T
    assert (raw - raw.transpose(-1, -2)).abs().max() > 0  # the rounding the symmetrisation removes
    n = gm.noised(A, 0.3)
    assert torch.equal(n.covs, n.covs.transpose(-1, -2))
