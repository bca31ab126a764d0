"""companion.sequence.eae: the k-NN entropy estimator against closed forms, scipy and its own invariances;
the EAE and VAE losses against independent computations; every validation path."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats
from scipy.spatial import cKDTree

from companion import eae

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _covariances(d: int) -> dict[str, torch.Tensor]:
    """Identity, a diagonal with variances spread over [0.3, 3] and a rotated (correlated) one with
    standard deviations spread over [0.5, 2]."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(100 + d), dtype=F64))
    s = torch.linspace(0.5, 2.0, d, dtype=F64) if d > 1 else torch.tensor([2.0], dtype=F64)
    diag = torch.linspace(0.3, 3.0, d, dtype=F64) if d > 1 else torch.tensor([0.3], dtype=F64)
    return {"identity": torch.eye(d, dtype=F64), "diagonal": torch.diag(diag), "correlated": q @ torch.diag(s**2) @ q.T}


# Tolerance (nats) on |H_hat - H| at n = 4000, any k in {1, 3, 5}. Measured over 8 seeds for the
# three Gaussians of _covariances and the uniform box (d = 1, 2):
#   d = 1, 2: |err| <= 0.063, sd <= 0.036           -> 0.12
#   d = 8:    mean -0.07 ... +0.12, max 0.19 (sd 0.05) -> 0.30   (1.6 % of H)
#   d = 16:   mean +0.28 ... +1.23, max 1.32 (sd 0.08) -> 1.6    (the bias grows with d, with k,
#             and with anisotropy: the Euclidean-ball estimator is not affine invariant)
# Even the loosest tolerance catches the classic slips: d log 2 (the max-norm/Euclidean mix-up of
# the `entropy_estimators` package), psi(k) vs psi(k+1) (1/k) and log(n) vs log(n-1) + ... at small n.
TOL = {1: 0.12, 2: 0.12, 8: 0.30, 16: 1.6}
N = 4000


@pytest.mark.parametrize("d", [1, 2, 8, 16])
def test_knn_entropy_matches_gaussian_closed_form(d):
    g = _gen(d)
    for name, cov in _covariances(d).items():
        z = torch.randn(N, d, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
        truth = eae.gaussian_entropy(cov).item()
        # closed form cross-check: 1/2 log det(2 pi e cov) by scipy
        assert abs(truth - stats.multivariate_normal(cov=cov.numpy()).entropy()) < 1e-10
        eps = eae.knn_distances(z, 5)
        for k in (1, 3, 5):
            err = eae.knn_entropy_from_distances(eps[:, k - 1], d, k).item() - truth
            assert abs(err) < TOL[d], (name, k, err)


def test_knn_entropy_matches_uniform_box_in_low_dimension_and_overestimates_in_high():
    for d in (1, 2, 8, 16):
        side = torch.linspace(0.5, 2.0, d, dtype=F64)
        z = torch.rand(N, d, generator=_gen(10 + d), dtype=F64) * side
        truth = torch.log(side).sum().item()  # log volume of the box
        eps = eae.knn_distances(z, 5)
        errs = [eae.knn_entropy_from_distances(eps[:, k - 1], d, k).item() - truth for k in (1, 3, 5)]
        if d <= 2:
            assert max(map(abs, errs)) < TOL[d], errs
        else:
            # Boundary bias: balls around points near a face stick out of the support, so the
            # density there looks smaller and H is over-estimated. Measured (8 seeds) at d = 8:
            # +0.88 / +1.09 / +1.19 for k = 1 / 3 / 5 (sd <= 0.04); d = 16: +3.28 / +3.74 / +3.96
            # (sd <= 0.05). We assert the sign and the growth with k, not the values.
            assert errs[0] > 0.5 and errs[0] < errs[1] < errs[2], errs


def test_max_entropy_ordering_at_unit_variance():
    """Unit-variance Gaussian > Laplace > uniform (eq. eae-maxent), d = 2, n = 5000 each; gaps of
    the truths are 0.14 and 0.35 nats per dim, the estimator's sd at d = 2 is about 0.03."""
    g = _gen(3)
    n, d = 5000, 2
    gauss = torch.randn(n, d, generator=g, dtype=F64)
    u = torch.rand(n, d, generator=g, dtype=F64)
    laplace = -torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()) / math.sqrt(2)
    unif = (torch.rand(n, d, generator=g, dtype=F64) - 0.5) * math.sqrt(12)
    h = [eae.knn_entropy(x, 3).item() for x in (gauss, laplace, unif)]
    truths = [d * 0.5 * math.log(2 * math.pi * math.e), d * (1 + math.log(2 / math.sqrt(2))), d * math.log(math.sqrt(12))]
    assert h[0] > h[1] > h[2]
    assert all(abs(a - b) < TOL[2] for a, b in zip(h, truths, strict=True)), (h, truths)


def test_matches_scipy_ckdtree_computation():
    """The same estimator computed from scipy's k-d tree (an independent neighbour search, with
    scipy's digamma and gamma functions): agreement to float64 rounding."""
    for d, n, k in ((1, 3000, 1), (3, 2000, 3), (8, 1500, 5), (16, 1000, 2)):
        z = torch.randn(n, d, generator=_gen(d), dtype=F64) * 1.7 + 0.3
        x = z.numpy()
        dist, _ = cKDTree(x).query(x, k + 1)
        eps = dist[:, k]
        log_bd = d / 2 * np.log(np.pi) - special.gammaln(d / 2 + 1)
        ref = d * np.mean(np.log(eps)) + log_bd + special.digamma(n) - special.digamma(k)
        assert abs(eae.knn_entropy(z, k).item() - ref) < 1e-10
        assert np.abs(eae.knn_distances(z, k).numpy() - dist[:, 1:]).max() < 1e-12


@pytest.mark.parametrize("method", ["tree", "brute"])
def test_float32_search_is_exact_despite_rounding(method):
    """In float32 the search uses a matrix product whose rounding can swap near-ties; the k + 8
    candidates recomputed directly must still give the true neighbours (checked against cKDTree on
    the same float32 points, then in float64). 1-D with n = 10 000 is the hardest case: typical
    neighbour distances (1e-4) are far below sqrt(float32 eps) times the norms. Measured: taking
    the k nearest of the matrix product directly errs by 4.5e-4 here; the refined search by 0."""
    z = torch.randn(10_000, 1, generator=_gen(5)) + 3.0
    z = torch.unique(z, dim=0)  # float32 draws collide at this n
    z = z[torch.randperm(z.shape[0], generator=_gen(6))]
    dist, _ = cKDTree(z.double().numpy()).query(z.double().numpy(), 4)
    got = eae.knn_distances(z, 3, method=method)
    assert got.dtype == torch.float32
    assert np.abs(got.double().numpy() - dist[:, 1:]).max() < 1e-6


def test_translation_invariance_and_scaling_law():
    """H(z + b) = H(z) and H(c z) = H(z) + d log c hold exactly for the estimator (float error only)."""
    for d in (1, 4, 16):
        z = torch.randn(1500, d, generator=_gen(d), dtype=F64)
        b = torch.randn(d, generator=_gen(50), dtype=F64) * 100
        for k in (1, 3):
            h = eae.knn_entropy(z, k).item()
            assert abs(eae.knn_entropy(z + b, k).item() - h) < 1e-9
            for c in (0.01, 3.0):
                assert abs(eae.knn_entropy(c * z, k).item() - (h + d * math.log(c))) < 1e-9


def test_beta_identity_behind_the_digamma_term():
    """E log X = psi(k) - psi(n) for X ~ Beta(k, n - k) (eq. eae-beta): Monte Carlo, 4 standard errors."""
    rng = np.random.default_rng(0)
    for k, n in ((1, 10), (3, 50), (5, 1000)):
        x = np.log(rng.beta(k, n - k, size=200_000))
        se = x.std() / math.sqrt(x.size)
        assert abs(x.mean() - (special.digamma(k) - special.digamma(n))) < 4 * se


def test_gradient_matches_finite_differences():
    """Away from ties the k-th neighbour distance is smooth, so autograd must match central
    differences (torch.autograd.gradcheck, float64)."""
    z = torch.randn(25, 3, generator=_gen(7), dtype=F64, requires_grad=True)
    for k in (1, 2):
        for method in ("tree", "brute"):
            assert torch.autograd.gradcheck(lambda u, k=k, m=method: eae.knn_entropy(u, k, method=m), (z,),
                                            eps=1e-6, atol=1e-6)


def test_chunking_and_dtype_device():
    z = torch.randn(700, 5, generator=_gen(8))
    a = eae.knn_entropy(z, 2, chunk=64, method="brute")
    b = eae.knn_entropy(z, 2, chunk=10_000, method="brute")
    assert a.dtype == torch.float32 and a.ndim == 0
    assert abs(a.item() - b.item()) < 1e-5


@pytest.mark.parametrize("d", [2, 8, 16])
def test_tree_and_brute_searches_agree(d):
    """The two searches are independent routes to the same neighbours: equal distances (float64)
    and, for the entropy, equal values to rounding; 'auto' is one of them."""
    z = torch.randn(3000, d, generator=_gen(60 + d), dtype=F64) * 1.3 - 0.2
    a = eae.knn_distances(z, 4, method="tree")
    b = eae.knn_distances(z, 4, method="brute")
    assert (a - b).abs().max() < 1e-12
    assert abs(eae.knn_entropy(z, 3, method="tree").item() - eae.knn_entropy(z, 3, method="brute").item()) < 1e-12
    assert eae.knn_search_method(3000, d) in ("tree", "brute")
    assert torch.equal(eae.knn_distances(z, 4), a if eae.knn_search_method(3000, d) == "tree" else b)


def test_tree_search_excludes_each_point_even_among_duplicates():
    """With duplicated rows the k-d tree may list a twin before the point itself: the point must
    still be removed, so a duplicated point sees its twin at distance 0 and nothing else changes."""
    z = torch.randn(300, 2, generator=_gen(61), dtype=F64)
    zdup = torch.cat([z, z[:20]])
    for method in ("tree", "brute"):
        e = eae.knn_distances(zdup, 2, method=method)
        assert (e[:20, 0] == 0).all() and (e[300:, 0] == 0).all() and (e[20:300, 0] > 0).all()
        assert torch.equal(e[:20, 1], eae.knn_distances(z, 1, method=method)[:20, 0])


def test_duplicates_raise_or_are_deduped():
    z = torch.randn(200, 3, generator=_gen(9), dtype=F64)
    zdup = torch.cat([z, z[:30]])
    with pytest.raises(ValueError, match="distance 0"):
        eae.knn_entropy(zdup, 1)
    assert abs(eae.knn_entropy(zdup, 1, dedupe=True).item() - eae.knn_entropy(z, 1).item()) < 1e-12
    # gradient still flows to every kept row through the dedupe
    zr = zdup.clone().requires_grad_(True)
    eae.knn_entropy(zr, 1, dedupe=True).backward()
    assert torch.isfinite(zr.grad).all() and (zr.grad[:200].abs().sum(1) > 0).all()
    # with k = 2 a point duplicated once has its 1st neighbour at 0 but not its 2nd: no error
    two = torch.cat([z, z[:1]])
    assert torch.isfinite(eae.knn_entropy(two, 2))


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((torch.randn(1, 3, dtype=F64),), {}, ValueError, "at least 2 points"),
        ((torch.randn(5, 3, dtype=F64), 5), {}, ValueError, "k must be < n"),
        ((torch.randn(5, 3, dtype=F64), 0), {}, ValueError, "k must be >= 1"),
        ((torch.randn(5, 3, dtype=F64), 1.5), {}, TypeError, "k must be an int"),
        ((torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 1.0]]),), {}, ValueError, "NaN"),
        ((torch.randn(5),), {}, ValueError, "2 dims"),
        ((torch.ones(5, 2, dtype=torch.long),), {}, TypeError, "floating"),
        ((np.ones((5, 2)),), {}, TypeError, "torch.Tensor"),
        ((torch.randn(5, 3, dtype=F64),), {"dedupe": 1}, TypeError, "dedupe"),
        ((torch.randn(5, 3, dtype=F64),), {"chunk": 0}, ValueError, "chunk"),
        ((torch.randn(5, 3, dtype=F64),), {"method": "kd"}, ValueError, "method"),
        ((torch.ones(3, 2, dtype=F64), 1), {"dedupe": True}, ValueError, "distinct points"),
        ((torch.cat([torch.ones(3, 2, dtype=F64), torch.zeros(1, 2, dtype=F64)]), 2), {"dedupe": True}, ValueError, "distinct"),
    ],
)
def test_knn_entropy_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        eae.knn_entropy(*args, **kwargs)


def test_other_validation_paths():
    with pytest.raises(ValueError, match="k must be < n"):
        eae.knn_distances(torch.randn(3, 2), 3)
    with pytest.raises(ValueError, match="non-negative"):
        eae.knn_entropy_from_distances(torch.tensor([1.0, -1.0, 2.0]), 2, 1)
    with pytest.raises(ValueError, match="distance 0"):
        eae.knn_entropy_from_distances(torch.tensor([1.0, 0.0, 2.0]), 2, 1)
    with pytest.raises(ValueError, match="k must be < n"):
        eae.knn_entropy_from_distances(torch.tensor([1.0, 2.0]), 2, 2)
    with pytest.raises(ValueError, match="d must be >= 1"):
        eae.unit_ball_log_volume(0)
    with pytest.raises(ValueError, match="symmetric"):
        eae.gaussian_entropy(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        eae.gaussian_entropy(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        eae.gaussian_entropy(torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least an input"):
        eae.mlp([3])


def test_unit_ball_volume_closed_forms():
    assert abs(math.exp(eae.unit_ball_log_volume(1)) - 2) < 1e-14
    assert abs(math.exp(eae.unit_ball_log_volume(2)) - math.pi) < 1e-14
    assert abs(math.exp(eae.unit_ball_log_volume(3)) - 4 / 3 * math.pi) < 1e-14
    # Monte Carlo in d = 4: fraction of the cube [-1, 1]^4 inside the ball, 4 standard errors
    u = torch.rand(400_000, 4, generator=_gen(11), dtype=F64) * 2 - 1
    inside = ((u * u).sum(1) <= 1).double()
    p, se = inside.mean().item(), inside.std().item() / math.sqrt(u.shape[0])
    assert abs(16 * p - math.exp(eae.unit_ball_log_volume(4))) < 16 * 4 * se


def test_gaussianity_gap_is_the_kl_to_the_standard_normal():
    """Eq. eae-kl: for unit-variance uniform coordinates (d = 1) the KL to N(0, 1) is
    1/2 log(2 pi e) - log(sqrt 12) = 0.1765; for N(0, I_2) it is 0; for N(m, s^2 I) the general
    form gives d (s^2 + m^2 - 1)/2 - d log s. Errors measured over 8 seeds at n = 4000, k = 3:
    uniform mean -0.009 sd 0.015 max 0.037; N(0, I_2) sd 0.008 max 0.013; shifted sd 0.024
    max 0.040. Tolerances are about 5 sd."""
    u = (torch.rand(N, 1, generator=_gen(12), dtype=F64) - 0.5) * math.sqrt(12)
    kl_exact = 0.5 * math.log(2 * math.pi * math.e) - math.log(math.sqrt(12))
    assert abs(eae.gaussianity_gap(u, 3).item() - kl_exact) < 0.08
    assert abs(eae.gaussianity_gap(torch.randn(N, 2, generator=_gen(13), dtype=F64), 3).item()) < 0.05
    m, s, d = 0.5, 1.5, 2
    z = m + s * torch.randn(N, d, generator=_gen(14), dtype=F64)
    kl = d * (0.5 * (s**2 + m**2 - 1) - math.log(s))
    assert abs(eae.gaussianity_gap(z, 3).item() - kl) < 0.12


# ============================================================================ models
def test_eae_codes_are_batch_normalized_and_shapes():
    torch.manual_seed(0)
    model = eae.EAE(latent=6, hidden=32)
    x = torch.rand(50, 1, 8, 8, generator=_gen(15)) * 2 - 1
    x_rec, z = model(x)
    assert x_rec.shape == x.shape and z.shape == (50, 6)
    assert z.mean(0).abs().max() < 1e-5
    # BN divides by sqrt(v + 1e-5), v the biased batch variance of the encoder output
    v = model.encoder(x.reshape(50, -1)).var(0, unbiased=False)
    assert torch.allclose(z.var(0, unbiased=False), v / (v + 1e-5), rtol=1e-4, atol=0)
    assert x_rec.abs().max() <= 1
    s1, s2 = model.sample(7, 3), model.sample(7, 3)
    assert s1.shape == (7, 1, 8, 8) and torch.equal(s1, s2)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) and m.affine for m in model.modules())


def test_eae_loss_is_reconstruction_minus_lambda_entropy():
    torch.manual_seed(1)
    model = eae.EAE(latent=4, hidden=32)
    x = torch.rand(64, 1, 8, 8, generator=_gen(16)) * 2 - 1
    x = torch.cat([x, x[:5]])  # a with-replacement batch repeats examples: dedupe must absorb it
    loss, parts = eae.eae_loss(model, x, lam=0.7, k=2, return_parts=True)
    x_rec, z = model(x)
    rec = ((x_rec - x) ** 2).sum((1, 2, 3)).mean()
    h = eae.knn_entropy(z[:64], 2)
    assert abs(parts["rec"] - rec.item()) < 1e-5 and abs(parts["entropy"] - h.item()) < 1e-5
    assert abs(loss.item() - (rec - 0.7 * h).item()) < 1e-5
    assert abs(eae.eae_loss(model, x, lam=0).item() - rec.item()) < 1e-5
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_vae_loss_kl_against_torch_distributions_and_noise_from_generator():
    torch.manual_seed(2)
    model = eae.VAE(latent=5, hidden=32)
    x = torch.rand(40, 1, 8, 8, generator=_gen(17)) * 2 - 1
    loss, parts = eae.vae_loss(model, x, _gen(0), beta=2.0, return_parts=True)
    mean, log_var = model.encode(x)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    kl = torch.distributions.kl_divergence(q, p).sum(1).mean().item()
    assert abs(parts["kl"] - kl) < 1e-5
    assert abs(loss.item() - (parts["rec"] + 2.0 * kl)) < 1e-4
    assert eae.vae_loss(model, x, _gen(0)).item() == eae.vae_loss(model, x, _gen(0)).item()
    assert eae.vae_loss(model, x, _gen(0)).item() != eae.vae_loss(model, x, _gen(1)).item()
    assert model.sample(3, 0).shape == (3, 1, 8, 8)


def test_model_validation_paths():
    model = eae.EAE(latent=3, hidden=16)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(4, 64))
    with pytest.raises(ValueError, match=r"z must have shape \(n, 3\)"):
        model.decode(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="m must be >= 1"):
        model.sample(0)
    with pytest.raises(TypeError, match="model must be an EAE"):
        eae.eae_loss(eae.VAE(latent=3, hidden=16), torch.zeros(4, 1, 8, 8))
    with pytest.raises(TypeError, match="model must be a VAE"):
        eae.vae_loss(model, torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        eae.eae_loss(model, torch.zeros(4, 1, 8, 8), lam=-1.0)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        eae.vae_loss(eae.VAE(latent=3, hidden=16), torch.zeros(4, 1, 8, 8), beta=0.0)
    with pytest.raises(TypeError, match="x_shape"):
        eae.EAE(x_shape=[1, 8, 8])
    with pytest.raises(ValueError, match="latent must be >= 1"):
        eae.VAE(latent=0)
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((4, 1, 8, 8), float("nan")))


def test_vae_code_is_reparameterized_with_the_generators_noise():
    # z = mean + exp(log_var / 2) * eps with eps the generator's own normal draw, exactly
    torch.manual_seed(0)
    model = eae.VAE(latent=4, hidden=16)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    model.decode = lambda z: z                      # read the code itself
    z, mean, log_var = model(x, torch.Generator().manual_seed(7))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose((z - mean) / torch.exp(0.5 * log_var), eps, atol=1e-5)
    assert (z - mean).abs().max() > 1e-3             # the noise is really there


# ---------------------------------------------------------------- codes and the ex-post GMM sampler
def _eval_eae(seed: int = 0) -> eae.EAE:
    torch.manual_seed(seed)
    m = eae.EAE(latent=3, hidden=16)
    m(torch.randn(64, 1, 8, 8, generator=_gen(seed)))   # one train-mode pass sets running statistics
    return m.eval()


def test_codes_are_the_eval_mode_encoding_and_need_eval_mode():
    m = _eval_eae()
    x = torch.randn(50, 1, 8, 8, generator=_gen(1))
    z = eae.codes(m, x)
    assert z.shape == (50, 3) and torch.equal(z, m.encode(x))
    assert torch.allclose(eae.codes(m, x[:7]), z[:7], atol=1e-6)   # a code does not depend on its batch
    torch.manual_seed(0)
    v = eae.VAE(latent=3, hidden=16).eval()
    assert torch.equal(eae.codes(v, x), v.encode(x)[0])   # the posterior mean
    with pytest.raises(ValueError, match="eval mode"):
        eae.codes(m.train(), x)
    with pytest.raises(TypeError):
        eae.codes(torch.nn.Linear(2, 2), x)


def test_ex_post_gmm_with_one_component_is_the_gaussian_mle_and_samples_it():
    m = _eval_eae()
    x = torch.randn(400, 1, 8, 8, generator=_gen(2))
    z = eae.codes(m, x).double()
    gmm = eae.ExPostGMM(m, x, components=1, seed=0)
    cov_mle = torch.cov(z.T, correction=0)
    assert torch.allclose(gmm.means[0], z.mean(0), atol=1e-6)
    assert torch.allclose(gmm.covariances[0], cov_mle, atol=2e-6)   # scikit-learn adds reg_covar = 1e-6
    draws = gmm.sample_codes(20000, generator=3)
    se = (cov_mle.diagonal() / 20000).sqrt()
    assert ((draws.mean(0) - z.mean(0)).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(draws.T), cov_mle, atol=0.05 * cov_mle.diagonal().max().item())
    assert torch.equal(gmm.sample_codes(5, generator=4), gmm.sample_codes(5, generator=4))
    assert gmm.sample(6, generator=0).shape == (6, 1, 8, 8)


def test_ex_post_gmm_recovers_the_weights_of_separated_clusters():
    """Codes in three far-apart clusters of sizes 100/200/300: EM finds the weights 1/6, 1/3, 1/2."""
    class Fixed(eae.EAE):
        def encode(self, x):
            return x.reshape(x.shape[0], -1)[:, :3]

    torch.manual_seed(0)
    m = Fixed(latent=3, hidden=8).eval()
    g = _gen(5)
    centers = torch.tensor([[0.0, 0, 0], [20, 0, 0], [0, 20, 0]])
    z = torch.cat([centers[i] + torch.randn(s, 3, generator=g) for i, s in enumerate((100, 200, 300))])
    x = torch.zeros(600, 1, 8, 8)
    x.reshape(600, -1)[:, :3] = z
    gmm = eae.ExPostGMM(m, x, components=3, seed=0)
    assert torch.allclose(torch.sort(gmm.weights).values, torch.tensor([1 / 6, 1 / 3, 1 / 2], dtype=F64), atol=1e-9)
    comp = torch.cdist(gmm.sample_codes(6000, generator=1).float(), centers).argmin(1)
    freq = torch.bincount(comp, minlength=3).double() / 6000
    assert torch.allclose(freq, torch.tensor([1 / 6, 1 / 3, 1 / 2], dtype=F64), atol=4 * math.sqrt(0.25 / 6000))


def test_ex_post_gmm_validation():
    m = _eval_eae()
    x = torch.randn(5, 1, 8, 8, generator=_gen(1))
    with pytest.raises(ValueError, match="at least components"):
        eae.ExPostGMM(m, x, components=10)
    with pytest.raises(ValueError):
        eae.ExPostGMM(m, x, components=0)
    gmm = eae.ExPostGMM(m, x, components=2)
    # what torch accepts: no generator (the global one), an empty batch (an empty result)
    torch.manual_seed(3)
    a = gmm.sample_codes(3)
    torch.manual_seed(3)
    assert torch.equal(a, gmm.sample_codes(3)) and a.shape == (3, gmm.means.shape[1])
    assert gmm.sample_codes(0, generator=0).shape == (0, gmm.means.shape[1])
    with pytest.raises(ValueError):
        gmm.sample_codes(-1, generator=0)
