"""Unified diffusion: corruptions, the three designs and the one sampler, against independent oracles.

Oracles: closed-form Gaussian laws and the exact GMM laboratory (C1-C3), matrix exponentials of
the discrete Laplacian (heat blur, C4), exact algebra (C5), chapter 1's DDPM/DDIM code (C10),
and exhaustive enumeration / chi-square tests for the discrete corruptions (C7-C9).
"""

import itertools
import math

import pytest
import torch
from scipy import stats

from companion import ddpm, metrics
from companion import unified as U
from companion.core.gmm import GaussianMixture, lab_1d
from companion.core.schedules import DiscreteSchedule

SU = DiscreteSchedule.su(1000)


def laplacian(n, boundary):
    """The discrete Laplacian as an explicit matrix (second method, independent of the spectral code)."""
    L = -2 * torch.eye(n, dtype=torch.float64) + torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    L += torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    if boundary == "periodic":
        L[0, -1] = L[-1, 0] = 1.0
    else:  # reflecting ghost points x_{-1} = x_0, x_n = x_{n-1}
        L[0, 0] = L[-1, -1] = -1.0
    return L


# ======================================================================= heat blur (C3, C4)
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_heat_blur_is_the_matrix_exponential_of_the_laplacian(boundary):
    n, tau = 12, 3.7
    x = torch.randn(5, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    E = torch.linalg.matrix_exp(tau * laplacian(n, boundary))
    torch.testing.assert_close(U.heat_blur(x, tau, 1, boundary), x @ E.T, rtol=0, atol=1e-12)
    # 2-D: the heat semigroup factorises over the axes, exp(tau (L x I + I x L)) = E (x) E
    img = torch.randn(3, 1, n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(U.heat_blur(img, tau, 2, boundary), E @ img @ E.T, rtol=0, atol=1e-12)


def test_heat_blur_per_sample_tau_semigroup_and_dtype():
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    taus = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    rows = torch.stack([U.heat_blur(x[i : i + 1], taus[i].item())[0] for i in range(4)])
    torch.testing.assert_close(U.heat_blur(x, taus), rows, rtol=0, atol=1e-14)
    torch.testing.assert_close(U.heat_blur(U.heat_blur(x, 0.7), 1.3), U.heat_blur(x, 2.0), rtol=0, atol=1e-13)
    assert U.heat_blur(x.float(), 1.0).dtype == torch.float32
    # the blur conserves the mean (the k = 0 mode is undamped)
    torch.testing.assert_close(U.heat_blur(x, 50.0, 1, "neumann").mean(1), x.mean(1), rtol=0, atol=1e-13)


def test_heatblur_linear_map_matches_its_forward_map():
    B = U.HeatBlur.linear((4, 5), T=6, max_width=2.0, boundary="neumann")
    x = torch.randn(3, 1, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    A = B.linear_map(4)
    torch.testing.assert_close(B.degrade(x, 4).reshape(3, -1), x.reshape(3, -1) @ A.T, rtol=0, atol=1e-13)


def test_c4_deterministic_blur_keeps_only_a_few_singular_values():
    """Su's 3w^2 -> 3 argument: the strongest blur of Cold Diffusion's schedule (width 0.8 t, T = 20)
    on 64 periodic pixels leaves 7 singular values above 1e-6 (k = 0, +-1, +-2, +-3)."""
    B = U.HeatBlur.linear((64,), T=20, max_width=16.0)
    sv = torch.linalg.svdvals(B.linear_map(20))
    ref = torch.linalg.svdvals(torch.linalg.matrix_exp(B.taus[20].item() * laplacian(64, "periodic")))
    torch.testing.assert_close(sv, ref, rtol=0, atol=1e-12)
    assert int((sv > 1e-6).sum()) == 7
    assert abs(sv[0].item() - 1.0) < 1e-12
    # closed form: the periodic Laplacian's eigenvalues are -(2 - 2 cos(2 pi k / n)), so the singular
    # values are exp(-tau (2 - 2 cos(2 pi k / 64))) (a pair for every k != 0, 32)
    k = torch.arange(64, dtype=torch.float64)
    closed = torch.exp(-B.taus[20].item() * (2 - 2 * torch.cos(2 * math.pi * k / 64))).sort(descending=True).values
    assert (sv - closed).abs().max() < 1e-12
    assert abs(sv[2].item() - sv[1].item()) < 1e-12


# ====================================================== C1: marginal identity, Gaussian designs
@pytest.mark.parametrize(
    "design", [U.Fresh(), U.Reuse(), U.GaussianRenoise(frac=0.5), U.GaussianRenoise(frac=1.0), U.GaussianRenoise(eta=1.0)]
)
def test_c1_every_design_keeps_the_forward_marginal(design):
    """Fixed x0: x_t ~ p(x_t|x0), then x_s by the design must be N(abar_s x0, bbar_s^2).
    Tolerance 4 SE for the mean and 4 sqrt(2/n) = 1.26 % for the variance; over seeds 0-4 the
    measured |z| stayed below 0.9 and the relative variance error below 0.82 % (2.6 SE)."""
    C, n, t, s = U.GaussianNoise(SU), 200_000, 600, 300
    g = torch.Generator().manual_seed(11)
    x0 = torch.full((n, 1), 1.3, dtype=torch.float64)
    x_t = C.corrupt(x0, t, g)
    design.check(C)
    x_s = design(C, x0, x_t, t, s, g)
    mu, sd = SU.alpha_bar[s].item() * 1.3, SU.beta_bar[s].item()
    z = (x_s.mean().item() - mu) / (sd / math.sqrt(n))
    assert abs(z) < 4
    assert abs(x_s.var().item() / sd**2 - 1) < 4 * math.sqrt(2 / n)


def test_c1_heatblur_reuse_and_renoise_keep_the_forward_marginal():
    """The same identity for blur + noise in 8 dimensions: mean B_s x0 and covariance s_s^2 I
    (measured over seeds 0-4: max |z| of the 8 means 1.9; max covariance-entry error 0.0124,
    with entry SE sqrt(2/n) = 0.0045 on the diagonal)."""
    B = U.HeatBlur.linear((8,), T=10, max_width=2.0, noise_std=torch.linspace(0, 0.5, 11, dtype=torch.float64))
    n, t, s = 100_000, 9, 4
    g = torch.Generator().manual_seed(5)
    x0 = torch.linspace(-1, 1, 8, dtype=torch.float64).expand(n, 8).clone()
    x_t = B.corrupt(x0, t, g)
    for design in (U.Reuse(), U.GaussianRenoise(frac=0.6)):
        x_s = design(B, x0, x_t, t, s, g)
        mean = B.degrade(x0[:1], s)[0]
        sd = B.noise_level(s)
        z = (x_s.mean(0) - mean) / (sd / math.sqrt(n))
        assert z.abs().max() < 4
        cov = torch.cov(x_s.T) / sd**2
        assert (cov - torch.eye(8, dtype=torch.float64)).abs().max() < 4.5 * math.sqrt(2 / n)  # 0.020


# ============================================== C2: exact posterior => exact sampler, any steps
def test_c2_exact_posterior_makes_a_5_step_sampler_exact():
    """x0_hat drawn from the exact GMM posterior: 5 steps land on the data law (W1 at the
    Monte-Carlo floor), while the posterior mean (DDIM with the exact model) does not.
    Measured over seeds 0-4 (n = 2e4): floor 0.005-0.019, reuse 0.011-0.015, DDPM-eta 0.008-0.013,
    mean-only DDIM 0.237-0.243."""
    m, C, n = lab_1d(), U.GaussianNoise(SU), 20_000
    times = SU.subsequence(5).timesteps
    x_T = m.noised(SU.alpha_bar[-1].item(), SU.beta_bar[-1].item()).sample(n, 0)
    w = {}
    for name, mode, design in [
        ("reuse", "sample", U.Reuse()),
        ("ddpm", "sample", U.GaussianRenoise(eta=1.0)),
        ("mean", "mean", U.Reuse()),
    ]:
        x = U.sample(U.posterior_estimator(m, C, mode), C, x_T, times, design, generator=0)
        w[name] = metrics.w1_to_cdf(x, m.cdf)
    assert w["reuse"] < 0.03 and w["ddpm"] < 0.03
    assert w["mean"] > 0.15


def test_c3_blur_plus_noise_is_exact_with_the_exact_posterior():
    """Linear-Gaussian blur + noise on 16 periodic pixels, data a 2-component GMM, only 2 steps
    (10 -> 5 -> 0). Sliced W1 to an independent exact sample, n = 4000: measured over seeds 0-4,
    floor 0.019-0.023, reuse 0.020-0.023, renoise(0.5) 0.020-0.023, posterior mean 0.261-0.273."""
    d = 16
    g = torch.Generator().manual_seed(0)
    k = torch.arange(d, dtype=torch.float64)
    means = torch.stack([torch.sin(2 * math.pi * k / d), -0.8 * torch.cos(4 * math.pi * k / d)])
    L = 0.15 * torch.randn(2, d, d, generator=g, dtype=torch.float64)
    mix = GaussianMixture([0.4, 0.6], means, L @ L.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=torch.float64))
    noise = torch.cat([torch.zeros(1, dtype=torch.float64), torch.linspace(0.1, 1.0, 10, dtype=torch.float64)])
    B = U.HeatBlur.linear((d,), 10, 3.0, noise_std=noise)
    x_T = mix.noised(B.linear_map(10), B.noise_level(10)).sample(4000, 1)
    ref = mix.sample(4000, 2)
    sw = {}
    for name, mode, design in [("reuse", "sample", U.Reuse()), ("renoise", "sample", U.GaussianRenoise(frac=0.5)),
                               ("mean", "mean", U.Reuse())]:
        x = U.sample(U.posterior_estimator(mix, B, mode), B, x_T, [10, 5, 0], design, generator=3)
        sw[name] = metrics.sliced_wasserstein(x, ref, 64, 0)
    assert sw["reuse"] < 0.035 and sw["renoise"] < 0.035
    assert sw["mean"] > 0.15
    # design (c) in closed form: x_s = F_s(x0, sqrt(1 - f^2) eps + f z) with eps = F_t^{-1}(x0, x_t)
    # and z the next normal draw of the generator; its noise therefore keeps unit variance
    x0 = mix.sample(5000, 4)
    x_t = B.corrupt(x0, 10, 5)
    out = U.GaussianRenoise(frac=0.6)(B, x0, x_t, 10, 5, torch.Generator().manual_seed(6))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ref = B.forward(x0, 5, 0.8 * B.invert(x0, x_t, 10) + 0.6 * z)
    assert (out - ref).abs().max() < 1e-12
    resid = (out - B.degrade(x0, 5)) / B.noise_level(5)
    # unit variance: SE of a variance from 80 000 normals is sqrt(2 / 80000) = 0.5 %
    assert abs(resid.var().item() - 1) < 0.02


# =========================================================== C5: Cold Diffusion instances
def test_c5_improved_cold_sampler_ignores_the_restorer_for_additive_degradations():
    """D(x, t) = x + t e: Alg. 2 telescopes to x_T - T e = x0 whatever the restorer returns."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 6, generator=g, dtype=torch.float64)
    C = U.Additive(lambda x, t: x + U.append_dims(torch.as_tensor(t, dtype=x.dtype), x.ndim) * e, T=20)
    W = torch.randn(6, 6, generator=g, dtype=torch.float64)
    garbage = lambda x, t: torch.tanh(x @ W) * 3 + t  # a random "restorer"
    x0 = torch.randn(8, 6, generator=g, dtype=torch.float64)
    x_T = C.degrade(x0, 20)
    out = U.cold_improved(garbage, C, x_T, range(20, -1, -1))
    assert (out - x0).abs().max() < 1e-12
    naive = U.cold_naive(garbage, C, x_T, range(20, -1, -1))
    assert (naive - x0).abs().max() > 0.5  # the naive sampler returns whatever the restorer says


def test_cold_samplers_are_the_fresh_and_reuse_designs():
    B = U.HeatBlur.linear((10,), T=5, max_width=2.0)  # deterministic blur
    x0 = torch.randn(4, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    restorer = lambda x, t: 0.9 * x
    x_T = B.degrade(x0, 5)
    # Alg. 2 written out by hand, x_{t-1} = x_t - D(x0_hat, t) + D(x0_hat, t-1)
    x = x_T
    for t in range(5, 0, -1):
        x0h = restorer(x, t)
        x = x - B.degrade(x0h, t) + B.degrade(x0h, t - 1)
    torch.testing.assert_close(U.cold_improved(restorer, B, x_T, range(5, -1, -1)), x, rtol=0, atol=1e-13)
    x = x_T
    for t in range(5, 0, -1):
        x = B.degrade(restorer(x, t), t - 1)
    torch.testing.assert_close(U.cold_naive(restorer, B, x_T, range(5, -1, -1)), x, rtol=0, atol=1e-13)


# ============================================== C10: the Gaussian instance is chapter 1's sampler
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_c10_gaussian_instance_reproduces_ddpm_ddim_to_float_precision(eta):
    m = lab_1d()
    sub = SU.subsequence(10)
    C = U.GaussianNoise(SU)
    model = ddpm.exact_eps_model(m, SU)
    x_T = torch.randn(500, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref, ref_x0 = ddpm.sample(model, sub, x_T, eta=eta, generator=7, return_x0=True)
    out, x0s = U.sample(U.eps_model_estimator(model, C), C, x_T, sub.timesteps, U.GaussianRenoise(eta=eta),
                        generator=7, return_x0=True)
    assert (out - ref).abs().max() < 1e-12
    assert (torch.stack(x0s) - ref_x0).abs().max() < 1e-12
    if eta == 0.0:  # design (b) is DDIM
        out_b = U.sample(U.eps_model_estimator(model, C), C, x_T, sub.timesteps, U.Reuse())
        assert (out_b - ref).abs().max() < 1e-12


def test_c10_ddpm_step_equals_renoise_step_with_the_same_draw():
    sub, C = SU.subsequence(20), U.GaussianNoise(SU)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(300, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(300, 2, generator=g, dtype=torch.float64)
    i = 7
    t, s = int(sub.timesteps[i]), int(sub.timesteps[i - 1])
    ref, x0h = ddpm.ddpm_step(sub, i, x_t, eps, generator=torch.Generator().manual_seed(9))
    mine = U.GaussianRenoise(eta=1.0)(C, x0h, x_t, t, s, torch.Generator().manual_seed(9))
    assert (mine - ref).abs().max() < 1e-13


def test_c10_analytic_variance_is_sigma2_plus_gamma2_sigmabar2():
    """x0_hat ~ N(mu, sigmabar^2) (Analytic-DPM) with DDPM's re-noising: the step's variance is
    sigma_t^2 + gamma_t^2 sigmabar^2 (chapter 1's reverse_variance). 4-SE tolerances; measured
    |z| <= 0.56 and relative variance error <= 0.78 % (limit 1.26 %) over seeds 0-4 (n = 2e5)."""
    sub, C, n = SU.subsequence(10), U.GaussianNoise(SU), 200_000
    i = 6
    t, s = int(sub.timesteps[i]), int(sub.timesteps[i - 1])
    x_t = torch.full((n, 1), 0.4, dtype=torch.float64)
    sbar = torch.zeros(SU.T + 1, dtype=torch.float64)
    sbar[t] = 0.3
    est = U.gaussian_spread_estimator(lambda x, tt, g: torch.full_like(x, 0.8), sbar)
    g = torch.Generator().manual_seed(1)
    x_s = U.GaussianRenoise(eta=1.0)(C, est(x_t, t, g), x_t, t, s, g)
    var = ddpm.reverse_variance(sub, i, 0.3**2)
    mean, _ = ddpm.posterior(sub, i, x_t[:1], torch.full((1, 1), 0.8, dtype=torch.float64))
    z = (x_s.mean().item() - mean.item()) / math.sqrt(var / n)
    assert abs(z) < 4
    assert abs(x_s.var().item() / var - 1) < 4 * math.sqrt(2 / n)


# ============================================================ C7-C9: discrete corruptions
def test_c7_masking_improved_is_exact_and_baseline_is_biased():
    """Length-4 sequences over 3 symbols (81 states), exact per-position marginals, n = 2e4.
    Measured TV over seeds 0-5: floor (exact sample) 0.016-0.020, improved 0.016-0.023,
    baseline 0.048-0.054."""
    law, Mk = U.EnumeratedLaw.chain(), U.Masking(4, 3)
    est = U.factorized_estimator(lambda x, t: law.masked_marginals(x, 3), 3)
    x_T = torch.full((20_000, 4), 3)
    tv_imp = law.tv(U.sample(est, Mk, x_T, [4, 3, 2, 1, 0], U.Reuse(), generator=0))
    tv_base = law.tv(U.sample(est, Mk, x_T, [4, 3, 2, 1, 0], U.Fresh(), generator=0))
    assert tv_imp < 0.03
    assert tv_base > 0.04
    # the order in which design (b) unmasks must be a uniform random permutation of the positions,
    # as in the forward process (a fixed order would leave the TV unchanged but break q(x_s | x_0))
    order = []

    def record(info):
        new = (info["x"] == 3) & (info["x_prev"] != 3)
        assert (new.sum(1) == 1).all()
        order.append(new.long().argmax(1))

    U.sample(est, Mk, x_T[:12_000], [4, 3, 2, 1, 0], U.Reuse(), generator=1, callback=record)
    order = torch.stack(order, 1)  # (n, 4), a permutation per row
    perm_id = (order * torch.tensor([64, 16, 4, 1])).sum(1)
    ids = [sum(p * 4 ** (3 - i) for i, p in enumerate(q)) for q in itertools.permutations(range(4))]
    counts = torch.bincount(perm_id, minlength=256)[ids]
    assert counts.sum() == 12_000
    # p-values over generator seeds 1-5: measured 0.25 .. 0.93
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def _subset_id(mask):
    return (mask.long() * (2 ** torch.arange(mask.shape[1]))).sum(1)


def test_c9_masking_forward_law_and_reverse_kernel_by_enumeration():
    """All 6! orderings of the keys are equally likely under q: enumerating them through the
    forward map gives the exact joint of (x_t, x_{t-1}); the masked set must be uniform over the
    C(6, t) subsets and, given x_t, x_{t-1} must unmask each masked position with probability 1/t."""
    L, t = 6, 3
    Mk = U.Masking(L, 9)
    perms = torch.tensor(list(itertools.permutations(range(L))), dtype=torch.float64)
    x0 = torch.arange(L).expand(perms.shape[0], L).clone()
    m_t = Mk.forward(x0, t, perms) == 9
    m_s = Mk.forward(x0, t - 1, perms) == 9
    counts = torch.bincount(_subset_id(m_t))
    counts = counts[counts > 0]
    assert counts.numel() == math.comb(L, t) and (counts == counts[0]).all()
    assert (m_s & ~m_t).sum() == 0  # x_{t-1} only unmasks
    pairs = torch.bincount(_subset_id(m_t) * 64 + _subset_id(m_s))
    pairs = pairs[pairs > 0]
    assert pairs.numel() == math.comb(L, t) * t and (pairs == pairs[0]).all()


def test_c9_masking_reuse_design_keeps_the_marginal_chi2():
    """The code's design (b) from x_t ~ p(x_t|x0): the masked set at t-1 is uniform over C(6, 2)
    subsets (chi-square; p-values over seeds 0-4: 0.14, 0.37, 0.80, 0.83, 0.99)."""
    L, t, n = 6, 3, 60_000
    Mk = U.Masking(L, 9)
    x0 = torch.arange(L).expand(n, L).clone()
    g = torch.Generator().manual_seed(0)
    x_s = U.Reuse()(Mk, x0, Mk.corrupt(x0, t, g), t, t - 1, g)
    m = x_s == 9
    assert (m.sum(1) == t - 1).all()
    counts = torch.bincount(_subset_id(m), minlength=64)
    counts = counts[[i for i in range(64) if bin(i).count("1") == t - 1]]
    assert counts.sum() == n
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3


def test_c8_editing_reuse_design_keeps_the_marginal_chi2():
    """Substitution by a *different* token, l = 6, V = 5: x_{t-1} from design (b) must be uniform
    over the C(6, 2) * 4^2 = 240 sequences at distance 2 from x0 (support enumerated here).
    p-values over seeds 0-4: 0.15, 0.44, 0.37, 0.30, 0.65."""
    L, V, t, n = 6, 5, 3, 100_000
    S = U.Substitution(L, V)
    x0 = torch.tensor([[0, 1, 2, 3, 4, 0]]).expand(n, L).clone()
    g = torch.Generator().manual_seed(1)
    x_t = S.corrupt(x0, t, g)
    assert ((x_t != x0).sum(1) == t).all()
    x_s = U.Reuse()(S, x0, x_t, t, t - 1, g)
    support = set()
    for pos in itertools.combinations(range(L), t - 1):
        for offs in itertools.product(range(1, V), repeat=t - 1):
            y = x0[0].clone()
            for p, o in zip(pos, offs, strict=True):
                y[p] = (y[p] + o) % V
            support.add(tuple(y.tolist()))
    assert len(support) == math.comb(L, t - 1) * (V - 1) ** (t - 1)
    ids = {s: i for i, s in enumerate(sorted(support))}
    codes = [ids.get(tuple(r), -1) for r in x_s.tolist()]
    assert min(codes) >= 0  # every draw lies in the support
    counts = torch.bincount(torch.tensor(codes), minlength=len(ids))
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    # and the reverted position always takes x0's token back
    assert (((x_s != x0) & (x_t == x0)).sum() == 0)


def test_enumerated_law_marginals_against_a_loop_and_the_pmf():
    law = U.EnumeratedLaw.chain(3, 4, seed=2)
    x_t = torch.tensor([[3, 3, 3, 3], [0, 3, 2, 3], [1, 1, 3, 0], [2, 0, 1, 1]])
    p = law.masked_marginals(x_t, 3)
    for r in range(x_t.shape[0]):  # brute force, state by state
        acc = torch.zeros(4, 3, dtype=torch.float64)
        for k, st in enumerate(law.states.tolist()):
            if all(a == 3 or a == b for a, b in zip(x_t[r].tolist(), st, strict=True)):
                for i, v in enumerate(st):
                    acc[i, v] += law.pmf[k]
        torch.testing.assert_close(p[r], acc / acc[0].sum(), rtol=0, atol=1e-14)
    table = law.pmf.reshape(3, 3, 3, 3)
    torch.testing.assert_close(p[0, 1], table.sum((0, 2, 3)), rtol=0, atol=1e-14)
    x = law.sample(50_000, 0)
    assert law.tv(x) < 0.03  # exact sample at n = 5e4: TV 0.011-0.014 over seeds 0-4


# ==================================================================== losses and models
def test_x0_loss_of_the_identity_model_matches_its_closed_form():
    """model(x_t) = x_t: E||x0 - x_t||^2 = E_t[(1 - abar_t)^2] E[x0^2] + E_t[bbar_t^2]. MC, 4 SE."""
    m, sch = lab_1d(), DiscreteSchedule.su(50)
    C = U.GaussianNoise(sch)
    x0 = m.sample(200_000, 0)
    per = []
    g = torch.Generator().manual_seed(3)
    for _ in range(8):
        per.append(U.x0_loss(lambda x, t: x, C, x0, g).item())
    ex2 = (m.weights * (m.means[:, 0] ** 2 + m.covs[:, 0, 0])).sum().item()
    ab, bb = sch.alpha_bar[1:], sch.beta_bar[1:]
    ref = ((1 - ab) ** 2).mean().item() * ex2 + (bb**2).mean().item()
    est = sum(per) / 8
    # measured relative spread of one batch (random t per row): 0.78 %; mean of 8 batches: SE 0.28 %
    assert abs(est - ref) / ref < 0.012  # about 4 SE


def test_masked_lm_loss_of_a_uniform_model_is_log_v_and_tokenmlp_shapes():
    law, Mk = U.EnumeratedLaw.chain(), U.Masking(4, 3)
    x0 = law.sample(256, 0)
    uniform = lambda x: torch.zeros(x.shape[0], 4, 3, requires_grad=True)
    assert abs(U.masked_lm_loss(uniform, Mk, x0, torch.Generator().manual_seed(0)).item() - math.log(3)) < 1e-6
    net = U.TokenMLP(3, 4, hidden=16)
    assert net(x0).shape == (256, 4, 3)
    loss = U.masked_lm_loss(net, Mk, x0, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)


def test_sampler_exposes_x0_hat_and_follows_dtype():
    C = U.GaussianNoise(SU)
    est = U.posterior_estimator(lab_1d(), C, "mean")
    x_T = torch.randn(10, 1, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    seen = []
    x, x0s = U.sample(est, C, x_T, [1000, 500, 0], U.Reuse(), return_x0=True, callback=lambda d: seen.append(d["t"]))
    assert x.dtype == torch.float32 and len(x0s) == 2 and seen == [1000, 500]
    torch.testing.assert_close(x, x0s[-1])  # the last step returns x0_hat (F_0 is the identity)


# ======================================================================= validation paths
def test_invalid_designs_raise_and_say_why():
    with pytest.raises(ValueError, match="Gaussian"):
        U.GaussianRenoise(frac=0.5).check(U.Masking(4, 3))
    with pytest.raises(ValueError, match="Gaussian"):
        U.sample(lambda x, t, g: x, U.Substitution(4, 3), torch.zeros(2, 4, dtype=torch.long), [4, 0],
                 U.GaussianRenoise(frac=0.1))
    with pytest.raises(U.NotInvertibleError, match="own token"):
        U.Reuse().check(U.Substitution(4, 3, different=False))
    with pytest.raises(U.NotInvertibleError, match="has none"):
        U.Reuse().check(U.Corruption())
    with pytest.raises(ValueError, match="GaussianNoise"):
        U.GaussianRenoise(eta=1.0).check(U.HeatBlur.linear((4,), 3, 1.0, 0.1))
    blur = U.HeatBlur.linear((4,), 3, 1.0)  # deterministic
    x = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(U.NotInvertibleError, match="deterministic"):
        blur.invert(x, x, 2)
    odd = U.Additive(lambda x, t: x, 3, torch.tensor([0.1, 0.0, 0.1, 0.1], dtype=torch.float64))
    with pytest.raises(U.NotInvertibleError, match="not defined"):
        odd.reuse(x, x, 1, 0)  # no noise at t = 1 to carry to the noisy level s = 0
    with pytest.raises(ValueError, match="exactly one"):
        U.GaussianRenoise()
    with pytest.raises(ValueError, match="exactly one"):
        U.GaussianRenoise(frac=0.1, eta=0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        U.GaussianRenoise(frac=1.5)


def test_input_validation_messages():
    C = U.GaussianNoise(SU)
    x = torch.zeros(3, 1, dtype=torch.float64)
    est = lambda x, t, g: x
    with pytest.raises(TypeError, match="estimator"):
        U.sample(None, C, x, [10, 0], U.Reuse())
    with pytest.raises(TypeError, match="design"):
        U.sample(est, C, x, [10, 0], "reuse")
    with pytest.raises(ValueError, match="monotone"):
        U.sample(est, C, x, [10, 5, 5, 0], U.Reuse())
    with pytest.raises(ValueError, match="down to 0"):
        U.sample(est, C, x, [10, 5], U.Reuse())
    with pytest.raises(ValueError, match="down to 0"):
        U.sample(est, C, x, [2000, 0], U.Reuse())
    with pytest.raises(TypeError, match="integer"):
        U.sample(est, C, x, torch.tensor([1.0, 0.0]), U.Reuse())
    with pytest.raises(TypeError, match="x_T"):
        U.sample(est, C, [0.0], [10, 0], U.Reuse())
    torch.manual_seed(0)  # None: torch's global generator
    a = C.corrupt(x, 3, None)
    torch.manual_seed(0)
    assert torch.equal(a, C.corrupt(x, 3, None))
    with pytest.raises(TypeError, match="generator"):
        C.corrupt(x, 3, "seed")
    with pytest.raises(ValueError, match=r"t must be a time index"):
        C.forward(x, 1001, x)
    with pytest.raises(TypeError, match="integer"):
        C.forward(x, torch.tensor([0.5, 0.5, 0.5]), x)
    with pytest.raises(ValueError, match="shape"):
        C.forward(x, torch.tensor([1, 2]), x)
    with pytest.raises(ValueError, match="noise must have the shape"):
        C.forward(x, 3, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="s must be < t"):
        C.ddpm_fraction(3, 5)
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        U.GaussianNoise("su")
    with pytest.raises(ValueError, match="boundary"):
        U.heat_blur(x, 1.0, 1, "dirichlet")
    with pytest.raises(ValueError, match="widths"):
        U.HeatBlur((4,), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="noise_std"):
        U.Additive(lambda x, t: x, 3, torch.tensor([0.0, -1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="mode"):
        U.posterior_estimator(lab_1d(), C, "median")
    with pytest.raises(TypeError, match="linear"):
        U.posterior_estimator(lab_1d(), U.Masking(3, 2))
    with pytest.raises(ValueError, match="p must be"):
        U.x0_loss(lambda x, t: x, C, x, torch.Generator(), p=3)
    with pytest.raises(TypeError, match="Masking"):
        U.masked_lm_loss(None, C, x, torch.Generator())
    with pytest.raises(TypeError, match="GaussianNoise"):
        U.eps_model_estimator(lambda x, t: x, U.Masking(3, 2))


def test_discrete_validation_messages():
    Mk, S = U.Masking(4, 3), U.Substitution(4, 3)
    x0 = torch.tensor([[0, 1, 2, 0]])
    with pytest.raises(TypeError, match="integer token"):
        Mk.forward(x0.double(), 1, torch.rand(1, 4))
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        Mk.forward(torch.zeros(1, 5, dtype=torch.long), 1, torch.rand(1, 5))
    with pytest.raises(ValueError, match="exactly t masked"):
        Mk.invert(x0, torch.tensor([[3, 1, 2, 0]]), 2, 0)
    with pytest.raises(ValueError, match="agree"):
        Mk.invert(x0, torch.tensor([[3, 1, 1, 0]]), 1, 0)
    with pytest.raises(ValueError, match="exactly t positions"):
        S.invert(x0, x0, 1, 0)
    with pytest.raises(TypeError, match="pair"):
        S.forward(x0, 1, torch.rand(1, 4))
    with pytest.raises(ValueError, match="V\\*\\*L"):
        U.EnumeratedLaw(torch.ones(10) / 10, 3, 4)
    with pytest.raises(ValueError, match="sum to 1"):
        U.EnumeratedLaw(torch.ones(81), 3, 4)
    law = U.EnumeratedLaw.chain()
    with pytest.raises(ValueError, match="MASK"):
        law.index(torch.tensor([[3, 0, 0, 0]]))
    impossible = U.EnumeratedLaw(torch.cat([torch.ones(1), torch.zeros(80)]).double(), 3, 4)
    with pytest.raises(ValueError, match="probability 0"):
        impossible.masked_marginals(torch.tensor([[1, 3, 3, 3]]), 3)


# ===================================================================== validation of the estimators
def test_estimators_validate_times_and_outputs():
    G = U.GaussianNoise(DiscreteSchedule.linear(10))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    est = U.eps_model_estimator(lambda x, t: torch.zeros_like(x), G)
    for bad in (-1, 11, -10):  # a negative index must not wrap around to T
        with pytest.raises(ValueError, match="t must"):
            est(x, bad)
    with pytest.raises(TypeError, match="int"):
        est(x, 2.5)
    assert torch.equal(est(x, torch.tensor(3)), est(x, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        U.eps_model_estimator(lambda x, t: x / 0.0, G)(x, 3)
    with pytest.raises(ValueError, match="shape of x"):
        U.eps_model_estimator(lambda x, t: x[:, :1], G)(x, 3)
    with pytest.raises(TypeError, match="callable"):
        U.eps_model_estimator(3, G)
    sp = U.gaussian_spread_estimator(est, torch.full((11,), 0.1, dtype=torch.float64))
    for bad in (-1, 11):
        with pytest.raises(ValueError, match="t must"):
            sp(x, bad, torch.Generator())
    with pytest.raises(ValueError, match="x0_std"):
        U.gaussian_spread_estimator(est, torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="t must"):
        G.noise_level(-1)
    fact = U.factorized_estimator(lambda x, t: torch.full((*x.shape, 3), float("nan")), 3)
    with pytest.raises(ValueError, match="non-negative"):
        fact(torch.zeros(2, 4, dtype=torch.long), 1, torch.Generator())


def test_heat_blur_checks_its_declared_shape():
    B = U.HeatBlur.linear((8,), T=4, max_width=2.0)
    with pytest.raises(ValueError, match=r"signal shape \(8,\)"):
        B.degrade(torch.zeros(3, 9, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match=r"signal shape \(8,\)"):
        B.corrupt(torch.zeros(3, 9, dtype=torch.float64), 2, 0)
    assert B.degrade(torch.zeros(3, 1, 8, dtype=torch.float64), 2).shape == (3, 1, 8)  # a channel axis is fine


def test_enumerated_law_refuses_an_explosive_state_space():
    with pytest.raises(ValueError, match="too many"):
        U.EnumeratedLaw.chain(vocab=12, length=9)
    with pytest.raises(ValueError, match="too many"):
        U.EnumeratedLaw(torch.ones(1), vocab=2, length=40)


def test_boundary_sizes_and_the_order_of_times():
    G = U.GaussianNoise(DiscreteSchedule.linear(10))
    with pytest.raises(ValueError):
        G.ddpm_fraction(5, 5)  # s must be < t
    assert 0 < G.ddpm_fraction(5, 4) <= 1
    law = U.EnumeratedLaw(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), vocab=3, length=1)  # one position
    assert law.n_states == 3 and law.sample(4, 0).shape == (4, 1)
    assert U.TokenMLP(3, 1, hidden=4)(torch.zeros(2, 1, dtype=torch.long)).shape == (2, 1, 3)
    B = U.HeatBlur((1,), torch.tensor([0.0, 1.0], dtype=torch.float64))  # a one-pixel signal is not blurred
    x = torch.randn(3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(B.degrade(x, 1), x, atol=1e-12)


def test_gaussian_fit_recovers_a_known_gaussian_and_draws_from_it():
    g = torch.Generator().manual_seed(0)
    L = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.4]], dtype=torch.float64)
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    n = 200_000
    x = (mu + torch.randn(n, 3, generator=g, dtype=torch.float64) @ L.T).reshape(n, 3, 1).float()
    fit = U.GaussianFit(x)
    cov = L @ L.T
    # Monte-Carlo standard errors: sd/sqrt(n) for the mean, about sd^2 * sqrt(2/n) for the covariance
    assert (fit.mean - mu).abs().max() < 5 * cov.diagonal().max().sqrt() / n**0.5
    assert (fit.cov - cov).abs().max() < 5 * cov.diagonal().max() * (2 / n) ** 0.5
    y = fit.sample(n, 1)
    assert y.shape == (n, 3, 1) and y.dtype == torch.float32
    assert torch.allclose(torch.cov(y.reshape(n, 3).double().T), fit.cov, atol=5 * cov.diagonal().max().item() * (2 / n) ** 0.5)
    assert torch.equal(fit.sample(5, 3), fit.sample(5, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        U.GaussianFit(x[:1])


def test_fit_linear_restorer_reaches_the_mmse_restorer():
    from companion.core.gmm import GaussianMixture as _GM

    d = 6
    k = torch.arange(d, dtype=torch.float64)
    C = torch.exp(-0.5 * ((k[:, None] - k[None]).abs() / 1.5) ** 2) + 0.1 * torch.eye(d, dtype=torch.float64)
    law = _GM([1.0], torch.zeros(1, d, dtype=torch.float64), C[None])
    B = U.HeatBlur.linear((d,), 4, 2.0, noise_std=0.1)
    R = U.fit_linear_restorer(B, law.sample(40_000, 1), 2)
    exact = U.posterior_estimator(law, B, "mean")
    x = B.corrupt(law.sample(500, 3), 3, 4)
    assert (R(x, 3) - exact(x, 3)).abs().max() < 0.05
    assert torch.equal(R(x, 0), x)
    with pytest.raises(TypeError):
        U.fit_linear_restorer(U.Masking(4, 3), law.sample(10, 1), 2)


def test_edit_generate_is_exact_with_exact_marginals():
    law, Sb = U.EnumeratedLaw.chain(vocab=3, length=3), U.Substitution(3, 3)
    pL = law.substituted_pmf(3)
    assert abs(pL.sum().item() - 1) < 1e-12
    # the substituted law at level t is the forward law: compare with Monte Carlo corruption
    x = law.sample(40_000, 1)
    emp = law.empirical(Sb.corrupt(x, 2, 2))
    assert 0.5 * (emp - law.substituted_pmf(2)).abs().sum() < 0.03
    m = law.substituted_marginals(law.states, 1)
    assert torch.allclose(m.sum(-1), torch.ones(27, 3, dtype=torch.float64))
    xT = law.states[torch.multinomial(pL, 20_000, replacement=True, generator=torch.Generator().manual_seed(3))]
    out = U.edit_generate(lambda xx, t: law.substituted_marginals(xx, t), Sb, xT, generator=4)
    floor = max(law.tv(law.sample(20_000, s)) for s in (5, 6, 7))
    assert law.tv(out) < 1.5 * floor
    with pytest.raises(ValueError):
        U.edit_generate(lambda xx, t: law.substituted_marginals(xx, t), Sb, xT, design="other", generator=1)
    with pytest.raises(TypeError):
        U.edit_generate(lambda xx, t: None, U.Masking(3, 3), xT, generator=1)
