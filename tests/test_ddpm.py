"""Chapter 1 (DDPM via Bayes) against independent oracles: Monte Carlo regressions, grid
quadrature of Bayes' rule on the exact laboratory, closed-form limiting laws, and the W1
distance of sampled laws to the exact CDF. Statistical tolerances were measured over seeds
(the spreads are written next to each one)."""

import math

import pytest
import torch

from companion import ddpm, metrics
from companion.core.gmm import GaussianMixture, lab_1d
from companion.core.schedules import DiscreteSchedule

F64 = torch.float64


@pytest.fixture(scope="module")
def full():
    return DiscreteSchedule.su(1000)


def randn(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# =============================================================== forward marginal (MC)
def forward_chain_z(sched, t, seed, n=100_000, x0=0.7):
    """z-scores of the mean and variance of x_t obtained by running t single steps
    x_s = alpha_s x_{s-1} + beta_s eps_s, against q_sample's closed form."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1), x0, dtype=F64)
    for s in range(1, t + 1):
        x = sched.alpha[s].item() * x + sched.beta[s].item() * torch.randn(n, 1, generator=g, dtype=F64)
    m_ref = ddpm.q_sample(sched, torch.full((1, 1), x0, dtype=F64), t, torch.zeros(1, 1, dtype=F64))[0, 0]
    v_ref = (ddpm.q_sample(sched, torch.zeros(1, 1, dtype=F64), t, torch.ones(1, 1, dtype=F64))[0, 0]) ** 2
    z_mean = (x.mean() - m_ref) / (v_ref / n).sqrt()
    z_var = (x.var() - v_ref) / (v_ref * math.sqrt(2 / n))
    return z_mean.item(), z_var.item()


def test_q_sample_matches_the_unrolled_forward_chain(full):
    # measured over 8 seeds x t in {30, 100}: max |z| = 2.1 (mean), 1.9 (variance); bound 4 SE
    for t in (30, 100):
        zm, zv = forward_chain_z(full, t, seed=1)
        assert abs(zm) < 4 and abs(zv) < 4, (t, zm, zv)


def test_q_sample_per_sample_times_and_dtype(full):
    x0 = randn(4, 3, seed=1, dtype=torch.float32)
    eps = randn(4, 3, seed=2, dtype=torch.float32)
    t = torch.tensor([0, 1, 500, 1000])
    xt = ddpm.q_sample(full, x0, t, eps)
    assert xt.dtype == torch.float32
    for i in range(4):
        ref = full.alpha_bar[t[i]].item() * x0[i] + full.beta_bar[t[i]].item() * eps[i]
        torch.testing.assert_close(xt[i], ref)


# ========================================================== A2: Monte-Carlo posterior
def posterior_regression_z(sched, t, seed, n=1_000_000, x0=1.3):
    """Sample x_{t-1} ~ p(.|x0) then x_t ~ p(.|x_{t-1}); regress x_{t-1} on x_t.
    Returns z-scores (slope, intercept, residual variance) against ddpm.posterior."""
    g = torch.Generator().manual_seed(seed)
    x0s = torch.full((n, 1), x0, dtype=F64)
    xp = ddpm.q_sample(sched, x0s, t - 1, torch.randn(n, 1, generator=g, dtype=F64))
    xt = sched.alpha[t].item() * xp + sched.beta[t].item() * torch.randn(n, 1, generator=g, dtype=F64)
    X, Y = xt[:, 0], xp[:, 0]
    Xm, Ym = X.mean(), Y.mean()
    sxx = ((X - Xm) ** 2).sum()
    slope = ((X - Xm) * (Y - Ym)).sum() / sxx
    icpt = Ym - slope * Xm
    s2 = ((Y - icpt - slope * X) ** 2).sum() / (n - 2)
    # the posterior is N(kappa x_t + lam x0, var): read kappa and lam off the function itself
    zero, one = torch.zeros(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64)
    kappa = ddpm.posterior(sched, t, one, zero)[0][0, 0]
    mean0, var = ddpm.posterior(sched, t, zero, torch.full((1, 1), x0, dtype=F64))
    z_slope = (slope - kappa) / (s2 / sxx).sqrt()
    z_icpt = (icpt - mean0[0, 0]) / (s2 * (1 / n + Xm**2 / sxx)).sqrt()
    z_var = (s2 - var) / (var * math.sqrt(2 / n))
    return z_slope.item(), z_icpt.item(), z_var.item()


def test_a2_posterior_matches_monte_carlo_regression(full):
    # measured over 8 seeds x t in {10, 200, 700}: max |z| = 1.56 (slope), 1.89 (intercept),
    # 1.03 (variance); bound 4 SE (residual variance SE = sqrt(2/N) = 0.14 %)
    for t in (10, 200, 700):
        zs = posterior_regression_z(full, t, seed=0)
        assert all(abs(z) < 4 for z in zs), (t, zs)


def gaussian_conditioning(sched, t):
    """p(x_{t-1} | x_t, x0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x0, built
    from alpha_bar and beta_bar only (Schur complement): returns (kappa, lam, var) with
    mean = kappa x_t + lam x0. Independent of the Ho-style formula in ddpm.posterior."""
    ab, bb = sched.alpha_bar, sched.beta_bar
    a = ab[t] / ab[t - 1]  # x_t = a x_{t-1} + noise, given x_{t-1}
    c11, c12, c22 = bb[t - 1] ** 2, a * bb[t - 1] ** 2, bb[t] ** 2
    kappa = c12 / c22
    lam = ab[t - 1] - kappa * ab[t]
    return kappa, lam, c11 - c12**2 / c22


@pytest.mark.parametrize("which", ["su", "cosine", "su_sub10", "linear_sub_quad"])
def test_a2_posterior_is_gaussian_conditioning_at_every_step(full, which):
    """A2 exactly at every t: a one-index slip (alpha_bar_t for alpha_bar_{t-1}) shifts lam by
    about 1 - alpha_t, i.e. 1e-5 .. 1e-1 relative, far above the 1e-10 tolerance."""
    sched = {"su": full, "cosine": DiscreteSchedule.cosine(200), "su_sub10": full.subsequence(10),
             "linear_sub_quad": DiscreteSchedule.linear(1000).subsequence(25, "quadratic")}[which]
    zero, one = torch.zeros(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64)
    for t in range(1, sched.T + 1):
        kappa, lam, var = gaussian_conditioning(sched, t)
        m1, v = ddpm.posterior(sched, t, one, zero)
        m2, _ = ddpm.posterior(sched, t, zero, one)
        assert abs(m1.item() - kappa.item()) <= 1e-10 * abs(kappa.item()) + 1e-14, (t, m1.item(), kappa.item())
        assert abs(m2.item() - lam.item()) <= 1e-10 * abs(lam.item()) + 1e-14, (t, m2.item(), lam.item())
        assert abs(v.item() - var.item()) <= 1e-10 * var.item() + 1e-16, (t, v.item(), var.item())


# ====================================================== A3: loss reweighting (exact)
def test_a3_x0_loss_is_the_reweighted_eps_loss(full):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).double()
    model = lambda x, t: net(torch.cat([x, t.to(x.dtype)[:, None] / 1000], 1))
    x0 = randn(512, 2, seed=3)
    w = ddpm.eps_loss(model, full, x0, torch.Generator().manual_seed(5), weighting="x0", reduction="none")
    simple = ddpm.eps_loss(model, full, x0, torch.Generator().manual_seed(5), reduction="none")
    # redo the same draws by hand: t first, then the noise
    g = torch.Generator().manual_seed(5)
    t = torch.randint(1, 1001, (512,), generator=g)
    eps = torch.randn(512, 2, generator=g, dtype=F64)
    ab, bb = full.alpha_bar[t][:, None], full.beta_bar[t][:, None]
    xt = ab * x0 + bb * eps
    pred = model(xt, t)
    x0_hat = (xt - bb * pred) / ab
    torch.testing.assert_close(w, ((x0 - x0_hat) ** 2).mean(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(simple, ((eps - pred) ** 2).mean(1), rtol=1e-12, atol=1e-14)
    mean = ddpm.eps_loss(model, full, x0, torch.Generator().manual_seed(5))
    assert mean.ndim == 0 and abs(mean.item() - simple.mean().item()) < 1e-14


def test_eps_x0_conversions_are_inverse(full):
    xt, e = randn(6, 2, seed=1), randn(6, 2, seed=2)
    t = torch.tensor([1, 2, 10, 100, 999, 1000])
    x0 = ddpm.x0_from_eps(full, t, xt, e)
    torch.testing.assert_close(ddpm.eps_from_x0(full, t, xt, x0), e, rtol=0, atol=1e-10)
    # and they invert the forward map: x_t built from (x0, e) gives back x0 and e
    torch.testing.assert_close(ddpm.x0_from_eps(full, 50, ddpm.q_sample(full, x0, 50, e), e), x0, rtol=0, atol=1e-12)


# ============================================== A4/A5/A6: exact reverse kernel by quadrature
GRID = torch.linspace(-12.0, 12.0, 200_001, dtype=F64)


def grid_reverse_moments(sched, t, x_t, log_prev):
    """Mean and variance of p(x_{t-1} | x_t) ∝ N(x_t; alpha_t y, beta_t^2) p_{t-1}(y), with
    ``log_prev`` = log p_{t-1} on GRID, by the trapezoid rule (spectrally accurate for these
    smooth integrands: the narrowest kernel, sd 0.01 at t = 5, spans 80 grid cells)."""
    y = GRID
    a, b = sched.alpha[t].item(), sched.beta[t].item()
    logw = -0.5 * ((x_t - a * y) / b) ** 2 + log_prev
    w = torch.exp(logw - logw.max())
    w[0] *= 0.5
    w[-1] *= 0.5
    z = w.sum()
    mean = (w * y).sum() / z
    var = (w * (y - mean) ** 2).sum() / z
    return mean.item(), var.item()


@pytest.mark.parametrize("skip", [False, True])
def test_a4_a5_exact_reverse_mean_and_variance(full, skip):
    """E[x_{t-1}|x_t] = posterior mean at x0 = E[x0|x_t]; Var = posterior var + gamma^2 Var[x0|x_t].
    With skip=True the same holds between consecutive indices of a 20-step subsequence."""
    mix = lab_1d()
    sched = full.subsequence(20) if skip else full
    steps = (1, 3, 12) if skip else (5, 50, 300)
    for t in steps:
        prev = mix.noised(sched.alpha_bar[t - 1].item(), sched.beta_bar[t - 1].item())
        logp = prev.log_prob(GRID[:, None])
        xts = torch.tensor([[-1.0], [0.2], [1.4]], dtype=F64) * sched.alpha_bar[t].item()
        post = mix.posterior(xts, sched.alpha_bar[t].item(), sched.beta_bar[t].item())  # exact GMM posterior
        mean_pred, _ = ddpm.posterior(sched, t, xts, post.mean())
        var_pred = ddpm.reverse_variance(sched, t, post.cov()[:, 0, 0])
        for j in range(3):
            m_grid, v_grid = grid_reverse_moments(sched, t, xts[j, 0].item(), logp)
            # measured: |mean error| <= 7e-13 (t = 5), variance rel. error <= 3e-14
            assert abs(m_grid - mean_pred[j, 0].item()) < 1e-8
            assert abs(v_grid - var_pred[j].item()) < 1e-8 * v_grid
        assert (var_pred >= ddpm.posterior(sched, t, xts, xts)[1] - 1e-15).all()


@pytest.mark.parametrize("t", [1, 5, 200])
def test_a6_limiting_laws(full, t):
    xts = torch.tensor([[-1.5], [0.3], [2.0]], dtype=F64)
    bb_prev = full.beta_bar[t - 1].item()
    a, b = full.alpha[t].item(), full.beta[t].item()
    zero = torch.zeros_like(xts)
    # (i) data = delta(0): p_{t-1} = N(0, bb_prev^2); the exact eps* is x_t / beta_bar_t
    post_mean, post_var = ddpm.posterior(full, t, xts, zero)
    eps_delta = xts / full.beta_bar[t].item()
    m0, _ = ddpm.ddpm_step(full, t, xts, eps_delta, variance="posterior", noise=zero)
    m1, _ = ddpm.ddpm_step(full, t, xts, eps_delta, variance="posterior", noise=torch.ones_like(xts))
    # (ii) data = N(0, 1): every marginal is N(0, 1); eps* = beta_bar_t x_t; Var[x0|x_t] = beta_bar_t^2
    eps_gauss = xts * full.beta_bar[t].item()
    g0, _ = ddpm.ddpm_step(full, t, xts, eps_gauss, variance="forward", noise=zero)
    g1, _ = ddpm.ddpm_step(full, t, xts, eps_gauss, variance="forward", noise=torch.ones_like(xts))
    for j in range(3):
        x = xts[j, 0].item()
        if t > 1:  # the delta law's p_0 is a point mass: no grid for it
            mg, vg = grid_reverse_moments(full, t, x, -0.5 * (GRID / bb_prev) ** 2)
            assert abs(mg - post_mean[j, 0].item()) < 1e-9 and abs(vg - post_var.item()) < 1e-9 * vg
        assert abs(m0[j, 0].item() - post_mean[j, 0].item()) < 1e-12
        assert abs((m1 - m0)[j, 0].item() - post_var.sqrt().item()) < 1e-12
        mg, vg = grid_reverse_moments(full, t, x, -0.5 * GRID**2)
        assert abs(mg - a * x) < 1e-9 and abs(vg - b**2) < 1e-9 * b**2
        assert abs(g0[j, 0].item() - a * x) < 1e-11 and abs((g1 - g0)[j, 0].item() - b) < 1e-11
    # eq. ddpm-reverse-var reproduces both limits: Var[x0|x_t] = 0 and = beta_bar_t^2
    assert abs(ddpm.reverse_variance(full, t, 0.0) - post_var.item()) < 1e-15
    assert abs(ddpm.reverse_variance(full, t, full.beta_bar[t].item() ** 2) - b**2) < 1e-12 * b**2 + 1e-18


# ========================================================= steps: DDIM family, subsequences
def test_ddpm_step_is_ddim_with_eta_one(full):
    sub = full.subsequence(25)
    x, e, z = randn(50, 2, seed=1), randn(50, 2, seed=2), randn(50, 2, seed=3)
    for t in (1, 2, 13, 25):
        a, a0 = ddpm.ddpm_step(sub, t, x, e, noise=z)
        b, b0 = ddpm.ddim_step(sub, t, x, e, eta=1.0, noise=z)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        torch.testing.assert_close(a0, b0, rtol=0, atol=0)
        c, _ = ddpm.ddim_step(sub, t, x, e, sigma=ddpm.ddim_sigma(sub, t, 1.0), noise=z)
        torch.testing.assert_close(c, b, rtol=0, atol=0)


def test_subsequence_step_uses_barred_quantities(full):
    """A step on full.subsequence(10) equals the DDIM formula written with the ORIGINAL
    alpha_bar at the labels tau_i, tau_{i-1} — not with the original per-step alpha."""
    sub = full.subsequence(10)
    x, e, z = randn(8, 1, seed=4), randn(8, 1, seed=5), randn(8, 1, seed=6)
    for i in (1, 4, 10):
        s, t = sub.timesteps[i - 1].item(), sub.timesteps[i].item()
        ab_t, ab_s = full.alpha_bar[t].item(), full.alpha_bar[s].item()
        bb_t, bb_s = math.sqrt(1 - ab_t**2), math.sqrt(1 - ab_s**2)
        a_ts = ab_t / ab_s
        sig = bb_s * math.sqrt(1 - a_ts**2) / bb_t
        x0 = (x - bb_t * e) / ab_t
        ref = ab_s * x0 + math.sqrt(bb_s**2 - sig**2) * e + sig * z
        got, _ = ddpm.ddpm_step(sub, i, x, e, noise=z)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
        if t - s > 1:
            bug = (x - full.beta[t].item() ** 2 / bb_t * e) / full.alpha[t].item()
            assert (bug - (got - sig * z)).abs().max() > 1e-3


def ddim_marginal_z(sched, t, sigma, seed, n=200_000, x0=0.9):
    """x_t ~ p(x_t|x0), one DDIM step with the TRUE x0 (eps from x0) and a given sigma:
    x_{t-1} must be distributed as p(x_{t-1}|x0) = N(ab_{t-1} x0, bb_{t-1}^2) (eq. ddim-constraints)."""
    g = torch.Generator().manual_seed(seed)
    x0s = torch.full((n, 1), x0, dtype=F64)
    xt = ddpm.q_sample(sched, x0s, t, torch.randn(n, 1, generator=g, dtype=F64))
    e = ddpm.eps_from_x0(sched, t, xt, x0s)
    xp, x0_hat = ddpm.ddim_step(sched, t, xt, e, sigma=sigma, generator=g)
    torch.testing.assert_close(x0_hat, x0s, rtol=0, atol=1e-9)
    m, v = sched.alpha_bar[t - 1].item() * x0, sched.beta_bar[t - 1].item() ** 2
    return ((xp.mean() - m) / math.sqrt(v / n)).item(), ((xp.var() - v) / (v * math.sqrt(2 / n))).item()


def test_ddim_family_keeps_the_marginal_for_any_sigma(full):
    # measured over 12 seeds x 3 sigmas: max |z| = 3.3 (mean, 1 of 36 above 2.6), 2.5 (variance); bound 4 SE
    sub = full.subsequence(10)
    t = 6
    bb_prev = sub.beta_bar[t - 1].item()
    for k, sigma in enumerate((0.0, 0.5 * bb_prev, bb_prev)):
        zm, zv = ddim_marginal_z(sub, t, sigma, seed=10 + k)
        assert abs(zm) < 4 and abs(zv) < 4, (sigma, zm, zv)


def test_last_step_returns_the_denoiser(full):
    x, e = randn(5, 2, seed=1), randn(5, 2, seed=2)
    xp, x0 = ddpm.ddpm_step(full, 1, x, e)  # posterior std is 0 at t = 1: no generator needed
    torch.testing.assert_close(xp, x0, rtol=0, atol=1e-12)
    xp, x0 = ddpm.ddim_step(full.subsequence(5), 1, x, e)
    torch.testing.assert_close(xp, x0, rtol=0, atol=1e-12)


def test_outputs_follow_input_dtype(full):
    x, e = randn(5, 1, 8, 8, seed=1, dtype=torch.float32), randn(5, 1, 8, 8, seed=2, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    for out in (ddpm.ddpm_step(full, 10, x, e, generator=g), ddpm.ddim_step(full, 10, x, e, eta=0.5, generator=g)):
        assert all(o.dtype == torch.float32 and o.shape == x.shape for o in out)
    m, v = ddpm.posterior(full, 10, x, e)
    assert m.dtype == torch.float32 and v.dtype == torch.float32 and v.ndim == 0


# ================================================================ sample loop
def test_sample_returns_x0_path_and_calls_back(full):
    mix = lab_1d()
    sub = full.subsequence(8)
    model = ddpm.exact_eps_model(mix, full)
    seen = []
    xT = randn(100, 1, seed=0)
    x, x0s = ddpm.sample(model, sub, xT, eta=1.0, generator=3, return_x0=True, callback=lambda d: seen.append(d))
    assert x0s.shape == (8, 100, 1) and [d["t"] for d in seen] == list(range(8, 0, -1))
    assert [d["t_label"] for d in seen] == sub.timesteps.flip(0)[:-1].tolist()
    torch.testing.assert_close(x, x0s[-1], rtol=0, atol=1e-12)  # last step of DDPM returns x0_hat
    # same seed, same result; eta = 0 needs no generator
    torch.testing.assert_close(ddpm.sample(model, sub, xT, eta=1.0, generator=3), x, rtol=0, atol=0)
    d1 = ddpm.sample(model, sub, xT, eta=0.0)
    torch.testing.assert_close(d1, ddpm.sample(model, sub, xT, eta=0.0, generator=9), rtol=0, atol=0)
    # the loop is the composition of ddim_step with the model's eps
    x = xT
    g = torch.Generator().manual_seed(3)
    for t in range(8, 0, -1):
        x, _ = ddpm.ddim_step(sub, t, x, model(x, int(sub.timesteps[t])), eta=1.0, generator=g)
    torch.testing.assert_close(ddpm.sample(model, sub, xT, eta=1.0, generator=3), x, rtol=0, atol=0)


# ================================================== A7: W1 vs number of steps, exact eps*
@pytest.fixture(scope="module")
def w1_table(full):
    mix = lab_1d()
    model = ddpm.exact_eps_model(mix, full)
    pT = mix.noised(full.alpha_bar[-1].item(), full.beta_bar[-1].item())  # exact prior: no mismatch
    xT = pT.sample(20_000, 0)
    tab = {"floor": metrics.w1_to_cdf(mix.sample(20_000, 100), mix.cdf)}
    for S in (5, 10, 20, 50, 100):
        sub = full.subsequence(S)
        tab["ddim", S] = metrics.w1_to_cdf(ddpm.sample(model, sub, xT, eta=0.0), mix.cdf)
        tab["ddpm", S] = metrics.w1_to_cdf(ddpm.sample(model, sub, xT, eta=1.0, generator=1000), mix.cdf)
    tab["ddim", 200] = metrics.w1_to_cdf(ddpm.sample(model, full.subsequence(200), xT, eta=0.0), mix.cdf)
    return tab


def test_a7_w1_decreases_with_steps_to_the_floor(w1_table):
    # measured over 6 seeds (n = 2e4): DDIM S=5/10/20/50/100/200: 0.234-0.243 / 0.116-0.134 /
    # 0.057-0.075 / 0.023-0.037 / 0.011-0.024 / 0.006-0.017 (1000 steps: 0.005-0.014); DDPM S=5..100: 0.319-0.344 /
    # 0.201-0.220 / 0.107-0.147 / 0.044-0.062 / 0.028-0.040; exact-sample floor 0.005-0.019.
    for name, Ss in (("ddim", (5, 10, 20, 50, 100, 200)), ("ddpm", (5, 10, 20, 50, 100))):
        w = [w1_table[name, S] for S in Ss]
        assert all(a > b for a, b in zip(w, w[1:], strict=False)), (name, w)
    assert w1_table["ddim", 200] < 0.03  # inside the floor band (max measured floor 0.019)
    assert w1_table["ddim", 5] > 5 * w1_table["floor"] or w1_table["ddim", 5] > 0.15  # 5 steps is far from exact


def test_a7_deterministic_ddim_beats_ancestral_at_equal_steps(w1_table):
    # per seed DDIM < DDPM held for every S <= 50 in 6/6 seeds (tightest: 0.037 vs 0.046 at S=50)
    for S in (5, 10, 20, 50):
        assert w1_table["ddim", S] < w1_table["ddpm", S], S


def test_a10_analytic_dpm_improves_ancestral_sampling(full):
    # measured over 6 seeds at S = 10: Analytic-DPM 0.094-0.099 vs DDPM 0.201-0.220 (W1)
    mix = lab_1d()
    model = ddpm.exact_eps_model(mix, full)
    sub = full.subsequence(10)
    pT = mix.noised(full.alpha_bar[-1].item(), full.beta_bar[-1].item())
    xT = pT.sample(20_000, 0)
    var = ddpm.analytic_dpm_variances(model, sub, mix.sample(20_000, 1), 2)
    assert (var[1:] >= sub.posterior_std()[1:] ** 2).all()
    w_a = metrics.w1_to_cdf(ddpm.sample(model, sub, xT, variance=var, generator=1), mix.cdf)
    w_p = metrics.w1_to_cdf(ddpm.sample(model, sub, xT, variance="posterior", generator=1), mix.cdf)
    assert w_a < 0.7 * w_p, (w_a, w_p)


def analytic_var_z(sched, t, seed, n=50_000):
    """Analytic-DPM's sigma_bar^2 from E||eps*||^2 against the average exact posterior variance
    E[Var(x0|x_t)] on the same x_t sample; their difference has mean 0 and a computable SE."""
    mix = GaussianMixture([0.2, 0.5, 0.3], [[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], [0.16, 0.09, 0.25])
    ab, bb = sched.alpha_bar[t].item(), sched.beta_bar[t].item()
    xt = mix.noised(ab, bb).sample(n, seed)
    e = mix.eps_prediction(xt, ab, bb)
    e2 = (e**2).mean(1)  # per point, per coordinate
    est = ddpm.analytic_x0_var(sched, t, e2.mean().item())
    post = mix.posterior(xt, ab, bb)
    pv = torch.diagonal(post.cov(), dim1=-2, dim2=-1).mean(1)  # (n,)
    # E[eps^2 | x_t] = eps*^2 + (ab/bb)^2 Var(x0|x_t); its sample mean is 1 up to MC error
    cond = e2 + (ab / bb) ** 2 * pv
    se = (bb / ab) ** 2 * cond.std().item() / math.sqrt(n)
    return (est - pv.mean().item()) / se


def test_a10_analytic_variance_is_the_mean_posterior_variance(full):
    # measured over 8 seeds x t in {50, 300, 700}: max |z| = 2.3; bound 4 SE
    for t in (50, 300, 700):
        z = analytic_var_z(full, t, seed=0)
        assert abs(z) < 4, (t, z)


def test_a10_analytic_variance_by_quadrature_at_every_step(full):
    """A10 without Monte Carlo: on the 1-D laboratory, E[eps*(x_t)^2] and the mean posterior variance
    E[Var(x0 | x_t)] are integrals against p_t, done by the trapezoid rule on a fine grid; Analytic-DPM's
    v_t = sigma_t^2 (1 - E eps*^2) must equal the second to 1e-6 relative at every step (the law of
    total variance), where the Monte-Carlo z-test above resolves t = 700 only to about +-100 %."""
    mix = lab_1d()
    sub = full.subsequence(20)
    for t in range(1, sub.T + 1):
        ab, bb = sub.alpha_bar[t].item(), sub.beta_bar[t].item()
        sd = math.sqrt(ab**2 * 0.5**2 + bb**2)
        x = torch.linspace(-3.5 * ab - 14 * sd, 2.5 * ab + 14 * sd, 40_001, dtype=F64)
        p = mix.noised(ab, bb).log_prob(x[:, None]).exp()
        e2 = torch.trapezoid(p * mix.eps_prediction(x[:, None], ab, bb)[:, 0] ** 2, x).item()
        pv = torch.trapezoid(p * mix.posterior(x[:, None], ab, bb).cov()[:, 0, 0], x).item()
        v = ddpm.analytic_x0_var(sub, t, e2)
        assert abs(v - pv) <= 1e-6 * pv, (t, v, pv)


def test_analytic_dpm_variances_algebra_with_a_constant_model(full):
    """With eps_theta = c (no Monte-Carlo noise: E eps^2 = c^2 exactly) every entry is in closed form:
    sigma~_t^2 + gamma_t^2 v_t, v_t = (beta_bar_t / alpha_bar_t)^2 (1 - c^2), gamma_t = alpha_bar_{t-1} beta_t^2 / beta_bar_t^2,
    and the model must be called with the full schedule's labels."""
    sub = full.subsequence(10)
    seen = []

    def model(x, t_label):
        seen.append(t_label)
        return torch.full_like(x, 0.6)

    x0 = lab_1d().sample(50, 0)
    out = ddpm.analytic_dpm_variances(model, sub, x0, 0)
    assert seen == [int(sub.timesteps[t]) for t in range(1, sub.T + 1)]
    ab, bb = sub.alpha_bar, sub.beta_bar
    for t in range(1, sub.T + 1):
        b2 = 1 - (ab[t] / ab[t - 1]) ** 2
        post_var = bb[t - 1] ** 2 * b2 / bb[t] ** 2
        gamma = ab[t - 1] * b2 / bb[t] ** 2
        v = (bb[t] / ab[t]) ** 2 * (1 - 0.36)
        assert abs(out[t].item() - (post_var + gamma**2 * v).item()) < 1e-12 * (1 + out[t].item())
    assert out[0] == 0
    clipped = ddpm.analytic_dpm_variances(model, sub, x0, 0, x0_var_max=0.5)
    for t in range(1, sub.T + 1):
        b2 = 1 - (ab[t] / ab[t - 1]) ** 2
        v = min(((bb[t] / ab[t]) ** 2 * 0.64).item(), 0.5)
        ref = (bb[t - 1] ** 2 * b2 / bb[t] ** 2 + (ab[t - 1] * b2 / bb[t] ** 2) ** 2 * v).item()
        assert abs(clipped[t].item() - ref) < 1e-12 * (1 + ref)


# ======================================================================== validation paths
def test_bad_inputs_raise(full):
    x, e = randn(4, 2), randn(4, 2, seed=1)
    g = torch.Generator()
    m = ddpm.exact_eps_model(lab_1d(), full)
    with pytest.raises(ValueError, match="t must"):
        ddpm.ddpm_step(full, 0, x, e)
    with pytest.raises(ValueError, match="t must"):
        ddpm.ddim_step(full, 1001, x, e)
    with pytest.raises(ValueError, match="t must"):
        ddpm.posterior(full.subsequence(5), 6, x, e)
    with pytest.raises(TypeError, match="t must"):
        ddpm.ddpm_step(full, 2.0, x, e)
    with pytest.raises(TypeError, match="t must"):
        ddpm.ddpm_step(full, True, x, e)
    with pytest.raises(ValueError, match="x0 must have the shape"):
        ddpm.posterior(full, 3, x, randn(4, 3))
    with pytest.raises(ValueError, match="eps must have the shape"):
        ddpm.ddpm_step(full, 3, x, randn(3, 2))
    with pytest.raises(ValueError, match="noise must have the shape"):
        ddpm.q_sample(full, x, 3, randn(4, 1))
    with pytest.raises(ValueError, match="eta must"):
        ddpm.ddim_step(full, 3, x, e, eta=-0.1)
    with pytest.raises(ValueError, match="eta must"):
        ddpm.sample(m, full.subsequence(3), randn(4, 1), eta=-1.0)
    with pytest.raises(ValueError, match="sigma must be <="):
        ddpm.ddim_step(full, 3, x, e, sigma=1.0)
    with pytest.raises(ValueError, match="sigma must"):
        ddpm.ddim_step(full, 3, x, e, sigma=-1e-3)
    with pytest.raises(ValueError, match="variance must"):
        ddpm.ddpm_step(full, 3, x, e, variance="large")
    with pytest.raises(ValueError, match="variance must"):
        ddpm.ddpm_step(full, 3, x, e, variance=-1.0, generator=g)
    torch.manual_seed(0)  # no generator: torch's global one
    a = ddpm.ddpm_step(full, 3, x, e)
    torch.manual_seed(0)
    assert torch.equal(a[0], ddpm.ddpm_step(full, 3, x, e)[0])
    with pytest.raises(TypeError, match="generator must"):
        ddpm.ddim_step(full, 3, x, e, eta=1.0, generator=3)
    with pytest.raises(TypeError, match="schedule must"):
        ddpm.q_sample(full.alpha_bar, x, 1, e)
    with pytest.raises(TypeError, match="x_t must be a torch.Tensor"):
        ddpm.x0_from_eps(full, 3, x.numpy(), e)
    with pytest.raises(ValueError, match="NaN"):
        ddpm.ddpm_step(full, 3, x * float("nan"), e)
    with pytest.raises(ValueError, match="batch dimension"):
        ddpm.q_sample(full, torch.tensor(1.0), 1, torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"t must lie in \[1"):
        ddpm.x0_from_eps(full, torch.tensor([0, 1, 2, 3]), x, e)
    with pytest.raises(ValueError, match="shape"):
        ddpm.q_sample(full, x, torch.tensor([1, 2]), e)
    with pytest.raises(TypeError, match="integer"):
        ddpm.q_sample(full, x, torch.tensor([1.0, 2, 3, 4]), e)
    with pytest.raises(ValueError, match="weighting"):
        ddpm.eps_loss(m, full, x[:, :1], g, weighting="snr")
    with pytest.raises(ValueError, match="reduction"):
        ddpm.eps_loss(m, full, x[:, :1], g, reduction="sum")
    with pytest.raises(TypeError, match="generator must"):
        ddpm.eps_loss(m, full, x[:, :1], 0)
    with pytest.raises(TypeError, match="model must"):
        ddpm.sample("eps", full, x)
    with pytest.raises(ValueError, match="variance as a tensor"):
        ddpm.sample(m, full.subsequence(3), randn(4, 1), variance=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="variance must"):
        ddpm.sample(m, full.subsequence(3), randn(4, 1), variance="fixed")
    with pytest.raises(ValueError, match="x0_var must"):
        ddpm.reverse_variance(full, 3, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="x0_var must"):
        ddpm.reverse_variance(full, 3, -1.0)
    with pytest.raises(ValueError, match="eps_sq_mean"):
        ddpm.analytic_x0_var(full, 3, -0.5)
    with pytest.raises(TypeError, match="mixture"):
        ddpm.exact_eps_model("lab", full)
    with pytest.raises(ValueError, match="t_label"):
        m(randn(4, 1), 1001)


def test_slerp_endpoints_norms_and_angles():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 64, generator=g, dtype=torch.float64), torch.randn(50, 64, generator=g, dtype=torch.float64)
    assert torch.allclose(ddpm.slerp(a, b, 0.0), a) and torch.allclose(ddpm.slerp(a, b, 1.0), b)
    # equal norms: every point of the arc keeps the norm (closed form of the great circle)
    b_eq = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    mid = ddpm.slerp(a, b_eq, 0.5)
    assert torch.allclose(mid.norm(dim=1), a.norm(dim=1), rtol=1e-12)
    # the midpoint is at equal angles from both ends
    cos = lambda u, v: (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
    assert torch.allclose(cos(mid, a), cos(mid, b_eq), atol=1e-12)
    with pytest.raises(ValueError, match="w must be in"):
        ddpm.slerp(a, b, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        ddpm.slerp(a, b[:, :3], 0.5)


# ---------------------------------------------------------------- continuous limit, diversity, Analytic-DDIM
def test_ddim_is_euler_of_the_continuous_form():
    from companion.core.gmm import lab_1d
    from companion.core.schedules import DiscreteSchedule

    full, lab = DiscreteSchedule.su(1000), lab_1d()
    sub = full.subsequence(7)
    eps_model, eps_sig = ddpm.exact_eps_model(lab, full), ddpm.vp_eps_sigma(lab)
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)[:, None]
    for t in range(1, 8):
        ab, bb, ab_p, bb_p = (sub.alpha_bar[t].item(), sub.beta_bar[t].item(), sub.alpha_bar[t - 1].item(), sub.beta_bar[t - 1].item())
        step, _ = ddpm.ddim_step(sub, t, x, eps_model(x, int(sub.timesteps[t])), eta=0.0)
        euler = ab_p * (x / ab + (bb_p / ab_p - bb / ab) * eps_sig(x, bb / ab))
        assert torch.allclose(step, euler, atol=1e-12)


def test_ddim_ode_solve_converges_and_validates():
    from companion.core.gmm import GaussianMixture

    g = GaussianMixture([1.0], [[0.3]], [0.5**2])
    eps = ddpm.vp_eps_sigma(g)
    x = torch.tensor([[0.7], [-1.2]], dtype=torch.float64)
    # Gaussian data: y(sigma) is affine in the noise, y = m + sqrt(v + sigma^2) * z, so the flow is closed form
    sT = 5.0
    y0 = x / (1 + sT**2) ** -0.5
    z = (y0 - 0.3) / (0.25 + sT**2) ** 0.5
    exact = 0.3 + 0.5 * z
    out = ddpm.ddim_ode_solve(eps, x, sT, 0.0, steps=200)
    assert torch.allclose(out, exact, atol=1e-8)
    with pytest.raises(ValueError):
        ddpm.ddim_ode_solve(eps, x, 1.0, 2.0)
    with pytest.raises(TypeError):
        ddpm.ddim_ode_solve(None, x, 1.0)


def test_ddim_gaussian_variance_matches_sampling():
    from companion.core.gmm import GaussianMixture
    from companion.core.schedules import DiscreteSchedule

    full = DiscreteSchedule.su(1000)
    g = GaussianMixture([1.0], [[0.0]], [1.0])
    sub = full.subsequence(5)
    eps = ddpm.exact_eps_model(g, full)
    pT = g.noised(full.alpha_bar[-1].item(), full.beta_bar[-1].item())
    n = 40_000
    for eta in (0.0, 1.0):
        V = ddpm.ddim_gaussian_variance(sub, eta, 1.0)
        xs = ddpm.sample(eps, sub, pT.sample(n, 1), eta=eta, generator=2)
        assert abs(xs.var().item() - V) < 4 * V * (2 / n) ** 0.5
    assert ddpm.ddim_gaussian_variance(sub, 0.0, 1.0) > ddpm.ddim_gaussian_variance(sub, 1.0, 1.0)
    assert abs(ddpm.ddim_gaussian_variance(full, 0.0, 1.0) - 1.0) < 5e-3   # many steps: the exact law
    with pytest.raises(ValueError):
        ddpm.ddim_gaussian_variance(sub, 0.5, -1.0)


def test_analytic_ddim_variances_reduce_to_analytic_dpm_at_eta_one():
    from companion.core.gmm import lab_1d
    from companion.core.schedules import DiscreteSchedule

    full, lab = DiscreteSchedule.su(1000), lab_1d()
    sub = full.subsequence(6)
    eps = ddpm.exact_eps_model(lab, full)
    x0 = lab.sample(2000, 3)
    a = ddpm.analytic_ddim_variances(eps, sub, x0, 4, eta=1.0)
    b = ddpm.analytic_dpm_variances(eps, sub, x0, 4)
    assert torch.allclose(a, b, atol=1e-12)
    v0 = ddpm.analytic_ddim_variances(eps, sub, x0, 4, eta=0.0)
    assert (v0[1:4] > 0).all()                     # even deterministic DDIM gets gamma^2 v_t (late steps: v_t clipped at 0)
    x = ddpm.sample_ddim_variance(eps, sub, lab.noised(full.alpha_bar[-1].item(), full.beta_bar[-1].item()).sample(50, 5),
                                  v0, eta=0.0, generator=6)
    assert x.shape == (50, 1) and torch.isfinite(x).all()
    with pytest.raises(ValueError):
        ddpm.sample_ddim_variance(eps, sub, x, torch.zeros(3, dtype=torch.float64), eta=0.0, generator=1)
    with pytest.raises(ValueError):
        ddpm.analytic_ddim_variances(eps, sub, x0, 4, eta=1.5)
