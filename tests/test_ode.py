"""Chapter 3 (the heat-equation ODE) against independent oracles.

Oracles: closed-form mixture densities and scores (``GaussianMixture.noised``), its closed-form
score divergence, the linear flow of a Gaussian, determinants by LU, discretization orders,
and Monte Carlo with tolerances in standard errors. Spreads quoted in comments were measured
over seeds 0-4 (or 0-9) with float64 on this machine.
"""

import math

import pytest
import torch

from companion import GaussianMixture, lab_1d, lab_2d, metrics, ode, su_vp

F64 = torch.float64


@pytest.fixture(scope="module")
def gm():
    return lab_2d()


@pytest.fixture(scope="module")
def sf(gm):
    return ode.gmm_score_fn(gm)


def gaussian(s: float) -> GaussianMixture:
    return GaussianMixture([1.0], [[0.0, 0.0]], [s**2])


# ============================================================== closed forms of the heat equation
def test_gmm_score_fn_matches_noised_mixture_and_autograd(gm, sf):
    x = gm.noised(1, 0.7).sample(300, 0)
    for s in (0.0, 0.01, 0.7, 30.0):
        assert (sf(x, s) - gm.noised(1, s).score(x)).abs().max() < 1e-10
    # third route: autograd of the convolution formula eq. ode-heat-solution
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ode.heat_log_density(gm, xx, 0.7).sum(), xx)
    assert (g - sf(x, 0.7)).abs().max() < 1e-10
    # dtype follows the input
    assert sf(x.float(), 0.7).dtype == torch.float32


def test_heat_log_density_is_the_noised_mixture(gm):
    x = gm.sample(200, 1)
    for s in (0.0, 0.3, 5.0):
        assert (ode.heat_log_density(gm, x, s) - gm.noised(1, s).log_prob(x)).abs().max() < 1e-10
    sig = torch.linspace(0.1, 3.0, 200, dtype=F64)  # one sigma per point
    ref = torch.stack([gm.noised(1, float(s)).log_prob(x[i : i + 1])[0] for i, s in enumerate(sig[:20])])
    assert (ode.heat_log_density(gm, x, sig)[:20] - ref).abs().max() < 1e-10


@pytest.mark.parametrize("t", [0.05, 0.1, 0.2])
def test_D3_heat_equation_residual_autograd(gm, t):
    """D3: p_t = p_0 * N(0, sigma_t^2) with sigma_t = 50 t^2 solves dp/dt = sigma' sigma Laplacian(p)."""
    x = gm.noised(1, 50 * t**2).sample(50, 2).requires_grad_(True)
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    sigma = 50 * tt**2
    p = ode.heat_log_density(gm, x, sigma).exp()
    # per-point time derivative: one backward pass per point
    dp_dt = torch.stack([torch.autograd.grad(p[i], tt, retain_graph=True)[0] for i in range(p.shape[0])])
    (gp,) = torch.autograd.grad(p.sum(), x, create_graph=True)
    lap = sum(torch.autograd.grad(gp[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    D = (100 * t) * (50 * t**2)  # sigma_dot * sigma
    resid = (dp_dt - D * lap).abs().max() / dp_dt.abs().max()
    # measured 1.3e-16 .. 3.1e-16 (float64 round-off; finite differences give ~4e-6)
    assert resid < 1e-11


@pytest.mark.parametrize("sigma", [0.5, 2.0, 4.0])
def test_D4_spectral_solution_vs_closed_form(sigma):
    """D4: FFT on a periodic grid (L = 40, 4096 points) vs the Gaussian convolution."""
    gm1 = lab_1d()
    L, m = 40.0, 4096
    grid = (torch.arange(m, dtype=F64) * (L / m) - L / 2)[:, None]
    p0 = gm1.log_prob(grid).exp()
    pt = ode.heat_spectral_1d(p0, L / m, sigma)
    # the exact solution on the circle: the Gaussian convolution summed over periodic images
    exact = sum(gm1.noised(1, sigma).log_prob(grid + k * L).exp() for k in range(-3, 4))
    # measured max error 7e-17 .. 1.7e-16 for sigma = 0.5, 2, 4 (float64 FFT round-off). Without the
    # images the wrap-around costs 1.7e-6 at sigma = 4: L must be >> sigma for the plain formula
    assert (pt - exact).abs().max() < 1e-10
    assert abs(pt.sum().item() * L / m - 1) < 1e-10  # mass is the zero mode, kept exactly
    assert (ode.heat_spectral_1d(p0, L / m, 0.0) - p0).abs().max() < 1e-14


# ======================================================================= Jacobian and continuity
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_D1_determinant_expansion_slope_two(seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(10, 10, generator=g, dtype=F64)
    hs = [2.0**-k for k in range(6, 13)]
    eye = torch.eye(10, dtype=F64)
    e_det = [abs(torch.linalg.det(eye + h * A).item() - (1 + h * A.trace().item())) for h in hs]
    e_log = [abs(torch.linalg.slogdet(eye + h * A)[1].item() - h * A.trace().item()) for h in hs]
    # measured slopes over seeds 0-4: det 1.94-2.02, log-det 1.87-2.00
    assert abs(metrics.loglog_slope(hs, e_det) - 2) < 0.2
    assert abs(metrics.loglog_slope(hs, e_log) - 2) < 0.2


def test_D2_continuity_equation_by_jacobian_log_det(gm, sf):
    """D2: one Euler step of f = -sigma' sigma score (sigma = t, at t = 1) changes log p by
    -div f dt and by -log det(I + J dt), both up to O(dt^2)."""
    x = gm.noised(1, 1.0).sample(200, 3)
    f = lambda y: -1.0 * sf(y, 1.0)
    J = ode.batch_jacobian(f, x)
    _, div = ode.divergence(f, x)
    assert (div - J.diagonal(dim1=1, dim2=2).sum(1)).abs().max() < 1e-12
    assert (div + gm.noised(1, 1.0).score_divergence(x)).abs().max() < 1e-12  # closed form
    hs = [2.0**-k for k in range(4, 10)]
    e_div, e_det = [], []
    for h in hs:
        true = gm.noised(1, 1.0 + h).log_prob(x + h * f(x)) - gm.noised(1, 1.0).log_prob(x)
        e_div.append((true + h * div).abs().max().item())
        e_det.append((true + torch.linalg.slogdet(torch.eye(2, dtype=F64) + h * J)[1]).abs().max().item())
    # measured over seeds 0-4: slopes 1.981-1.985 (divergence) and 1.994-1.997 (log-det)
    assert abs(metrics.loglog_slope(hs, e_div) - 2) < 0.1
    assert abs(metrics.loglog_slope(hs, e_det) - 2) < 0.1
    assert e_div[-1] < 1e-4 and e_det[-1] < 1e-4  # measured 8e-6 .. 1.7e-5 at dt = 2^-9


# ============================================================================ the ODE and solvers
def test_heat_drift_is_sigma_rate_times_sigma_velocity(gm, sf):
    x = gm.noised(1, 2.0).sample(20, 4)
    t = 0.2  # sigma = 50 t^2 = 2, sigma' = 100 t = 20
    d = ode.heat_drift(sf, x, t, lambda u: 50 * u**2)
    assert (d - 20.0 * ode.heat_velocity(sf, x, 2.0)).abs().max() < 1e-12
    assert (ode.heat_velocity(sf, x, 2.0) - (x - gm.denoise(x, 1.0, 2.0)) / 2.0).abs().max() < 1e-12


@pytest.mark.parametrize("name", ["Euler", "Heun", "RK4"])
def test_solver_orders_nfe_and_denoised(gm, sf, name):
    fn, order = ode.SOLVERS[name]
    x = gm.noised(1, 80.0).sample(200, 5)
    ref, _ = ode.sample_adaptive(sf, x, 80.0, 2e-3, rtol=1e-10, atol=1e-10)
    errs = []
    for N in (32, 64):
        seen = []
        y, info = fn(sf, x, ode.sigma_grid(N, 2e-3, 80.0), callback=seen.append)
        assert info["nfe"] == N * {"Euler": 1, "Heun": 2, "RK4": 4}[name]
        assert len(seen) == N and seen[-1]["sigma_next"] == pytest.approx(2e-3)
        # the exposed x0-hat is Tweedie's posterior mean (second route: the exact posterior)
        s = seen[-1]["sigma"]
        assert (seen[-1]["denoised"] - gm.denoise(seen[-1]["x"], 1.0, s)).abs().max() < 1e-9
        errs.append((y - ref).norm(dim=1).median().item())
    # median per-point error (the max is dominated by points near a mode boundary);
    # measured log2 ratios N = 32 -> 64 over seeds 0-4: Euler 1.015-1.037, Heun 2.05-2.12, RK4 3.98-4.02
    assert abs(math.log2(errs[0] / errs[1]) - order) < 0.25


def test_solvers_follow_dtype(gm, sf):
    x = gm.noised(1, 10.0).sample(10, 6).float()
    for fn, _ in ode.SOLVERS.values():
        y, _ = fn(sf, x, ode.sigma_grid(4, 0.1, 10.0))
        assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_sigma_grid():
    s = ode.sigma_grid(10, 2e-3, 80.0, rho=7.0)
    assert s.shape == (11,) and s[0].item() == 80.0 and s[-1].item() == 2e-3
    assert (s[1:] < s[:-1]).all()
    lin = ode.sigma_grid(4, 1.0, 5.0, rho=1.0)
    assert torch.allclose(lin, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=F64))


def test_solve_adaptive_on_linear_ode_both_directions():
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    y1, info = ode.solve_adaptive(lambda y, t: -t * y, y0, 0.0, 2.0, rtol=1e-10, atol=1e-12)
    assert (y1 - y0 * math.exp(-2.0)).abs().max() < 1e-9
    back, _ = ode.solve_adaptive(lambda y, t: -t * y, y1, 2.0, 0.0, rtol=1e-10, atol=1e-12)
    assert (back - y0).abs().max() < 1e-9
    assert info["nfe"] == 1 + 6 * (info["steps"] + info["rejected"])


def test_D6_schedule_invariance(gm, sf):
    """D6: sigma = 50 t, 50 t^2 and geometric give the same endpoint at the same sigma_min."""
    smin, smax = 2e-3, 50.0
    x = gm.noised(1, smax).sample(20, 7)
    ends = []
    for sig, t_end in ((lambda t: 50 * t, smin / 50), (lambda t: 50 * t**2, math.sqrt(smin / 50)),
                       (lambda t: smin * (smax / smin) ** t, 0.0)):
        y, _ = ode.solve_adaptive(lambda y, t, sig=sig: ode.heat_drift(sf, y, t, sig), x, 1.0, t_end,
                                  rtol=1e-9, atol=1e-9)
        ends.append(y)
    # measured max differences 3.9e-9 .. 2.1e-8 (rtol 1e-9; 200 points seed 1, 50 points seed 7)
    assert (ends[0] - ends[1]).abs().max() < 1e-7
    assert (ends[0] - ends[2]).abs().max() < 1e-7


def test_D7_vp_ode_is_heat_ode_in_rescaled_coordinates(gm, sf):
    sch = su_vp()

    def score_t(x, t):
        return gm.noised(float(sch.alpha_bar(t)), float(sch.beta_bar(t))).score(x)

    # pointwise: d(x / alpha_bar)/dt of the PF-ODE equals (dy/dsigma)(dsigma/dt) of the heat ODE
    t, h = 0.4, 1e-6
    x = gm.noised(float(sch.alpha_bar(t)), float(sch.beta_bar(t))).sample(30, 8)
    y, s = ode.vp_to_heat(sch, x, t)
    dy_dt = (ode.pf_ode_drift(sch, score_t, x, t) - float(sch.f(t)) * x) / float(sch.alpha_bar(t))
    ds_dt = (float(sch.sigma(t + h)) - float(sch.sigma(t - h))) / (2 * h)
    assert (dy_dt - ds_dt * ode.heat_velocity(sf, y, s)).abs().max() < 1e-6  # central FD error ~h^2
    # integrated: VP from t = 1 to 0.05 vs the heat ODE from sigma(1) to sigma(0.05)
    x1 = gm.noised(float(sch.alpha_bar(1.0)), float(sch.beta_bar(1.0))).sample(50, 9)
    xv, _ = ode.solve_adaptive(lambda z, u: ode.pf_ode_drift(sch, score_t, z, u), x1, 1.0, 0.05,
                               rtol=1e-10, atol=1e-10)
    y1, s1 = ode.vp_to_heat(sch, x1, 1.0)
    y05, s05 = ode.vp_to_heat(sch, xv, 0.05)
    yh, _ = ode.sample_adaptive(sf, y1, s1, s05, rtol=1e-10, atol=1e-10)
    # measured 7.1e-10 (200 points); the brief's prototype 7.8e-9
    assert (y05 - yh).abs().max() < 1e-7


def test_D8_rotation_changes_trajectories_not_marginals():
    s0, smax, smin, omega = 0.7, 10.0, 0.05, 0.3
    g0 = gaussian(s0)
    sf0 = ode.gmm_score_fn(g0)
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)
    rot = lambda x, s: omega * x @ J.T
    # the rotation is divergence-free *with the density*: div(J x p) = p (J x . grad log p)
    pts = g0.sample(100, 10)
    assert ((pts @ J.T) * g0.score(pts)).sum(1).abs().max() < 1e-12
    gm = lab_2d()  # ... which fails for a non-radial law, where the marginals would change
    assert ((pts @ J.T) * gm.score(pts)).sum(1).abs().max() > 0.1
    x = g0.noised(1, smax).sample(1000, 11)
    sig = ode.sigma_grid(200, smin, smax, rho=1.0)
    plain, _ = ode.sample_rk4(sf0, x, sig)
    rotated, _ = ode.sample_rk4(sf0, x, sig, extra_velocity=rot)
    # closed form: the flow is linear, x(sigma) = c(sigma) R(omega (sigma - sigma_max)) x(sigma_max)
    c = math.sqrt((s0**2 + smin**2) / (s0**2 + smax**2))
    th = omega * (smin - smax)
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=F64)
    # measured 1.2e-7 (RK4, 200 uniform steps: the O(h^4) discretization error)
    assert (plain - c * x).abs().max() < 1e-6
    assert (rotated - c * x @ R.T).abs().max() < 1e-6
    assert (rotated - plain).norm(dim=1).median() > 0.5  # trajectories differ ...
    # ... marginals do not: both are N(0, (s0^2 + smin^2) I); Monte Carlo check of the variance
    # (SE of a variance estimate ~ var * sqrt(2 / n); n = 1000: measured |z| <= 1.77 over seeds 0-9 and 11)
    var = s0**2 + smin**2
    se = var * math.sqrt(2 / (2 * x.shape[0]))
    assert abs(rotated.pow(2).mean().item() - var) < 4 * se


# ============================================================================ likelihood
def test_B9_round_trip_data_prior_data(gm, sf):
    x0 = gm.noised(1, 2e-3).sample(50, 12)
    z, _ = ode.sample_adaptive(sf, x0, 2e-3, 50.0, rtol=1e-9, atol=1e-9)  # encoder: sigma increases
    back, _ = ode.sample_adaptive(sf, z, 50.0, 2e-3, rtol=1e-9, atol=1e-9)
    # measured 3.3e-9 .. 1.3e-8 over seeds 0-4 (the brief's prototype: 9.7e-8)
    assert (back - x0).abs().max() < 1e-6
    # the latent itself, against a closed form: for one Gaussian N(mu, s0^2 I) the flow is the
    # linear map z = mu + (x0 - mu) sqrt((s0^2 + s1^2) / (s0^2 + s^2)) between noise levels s and s1
    g1 = GaussianMixture([1.0], [[1.0, -2.0]], [0.49])
    x1 = g1.noised(1, 2e-3).sample(50, 12)
    z1, _ = ode.sample_adaptive(ode.gmm_score_fn(g1), x1, 2e-3, 50.0, rtol=1e-9, atol=1e-9)
    mu = g1.means[0]
    expected = mu + (x1 - mu) * math.sqrt((0.49 + 50.0**2) / (0.49 + 2e-3**2))
    # measured 2.1e-9 relative to |z| ~ 50 (rtol 1e-9)
    assert (z1 - expected).abs().max() < 1e-6 * expected.abs().max()


def test_B10_exact_log_likelihood(gm, sf):
    smin, smax = 2e-3, 50.0
    x = gm.noised(1, smin).sample(50, 13)
    exact = gm.noised(1, smin).log_prob(x)
    lp, info = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax,
                                  prior_logp=gm.noised(1, smax).log_prob, rtol=1e-8, atol=1e-8)
    # measured max error 3.4e-8 nats (50 points; 4.8e-8 on 300), rtol 1e-8; prototype 5.7e-8
    assert (lp - exact).abs().max() < 1e-6
    assert info["nfe"] > 0 and info["latent"].shape == x.shape
    # with the N(0, smax^2 I) prior the error is exactly the prior mismatch at the latent
    lp_n, info_n = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax, rtol=1e-7, atol=1e-7)
    mismatch = ode.gaussian_log_prob(info_n["latent"], smax) - gm.noised(1, smax).log_prob(info_n["latent"])
    assert (lp_n - exact - mismatch).abs().max() < 1e-6


def test_hutchinson_is_unbiased(gm, sf):
    smin, smax = 2e-3, 50.0
    x = gm.noised(1, smin).sample(100, 14)
    lp, _ = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax, rtol=1e-6, atol=1e-6)
    lph, _ = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax, method="hutchinson",
                                generator=0, rtol=1e-6, atol=1e-6)
    err = lph - lp
    z = err.mean() / (err.std() / math.sqrt(err.numel()))
    # measured z over generator seeds 0-9 (100 points): -1.83 .. 2.07; per-point spread ~0.7 nats
    assert abs(z.item()) < 4
    assert err.std() > 1e-3
    # per point, many probes average to the exact divergence
    f = lambda y: -0.25 * sf(y, 0.5)
    _, exact = ode.divergence(f, x[:20])
    probes = torch.randn(400, 20, 2, generator=torch.Generator().manual_seed(0), dtype=F64).sign()
    _, est = ode.divergence(f, x[:20], method="hutchinson", probes=probes)
    one = torch.stack([ode.divergence(f, x[:20], method="hutchinson", probes=probes[p : p + 1])[1]
                       for p in range(40)])
    se = one.std(0) / math.sqrt(400)
    # measured max |z| over the 20 points, seeds 0-5: 1.97 .. 2.42
    assert ((est - exact).abs() <= 4.5 * se + 1e-12).all()


def test_gaussian_log_prob_is_a_product_of_normals():
    """Independent route: torch.distributions' 1-D normal, summed over every coordinate (D = 6 here)."""
    x = torch.randn(7, 3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for std in (0.3, 2.5):
        ref = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(std, dtype=F64)).log_prob(x).flatten(1).sum(1)
        assert (ode.gaussian_log_prob(x, std) - ref).abs().max() < 1e-12


def test_hutchinson_with_rademacher_probes_is_exact_for_a_diagonal_jacobian():
    """For a Gaussian with diagonal covariance the score's Jacobian is diagonal at every noise level,
    and a Rademacher probe gives eps^T J eps = tr J exactly: the Hutchinson likelihood must equal
    the closed form to ODE precision (an independent oracle, not the exact-trace routine)."""
    g = GaussianMixture([1.0], [[0.5, -1.0]], [[0.3, 2.0]])
    sf = ode.gmm_score_fn(g)
    smin, smax = 1e-2, 20.0
    x = g.noised(1, smin).sample(30, 3)
    exact = g.noised(1, smin).log_prob(x)
    for n_probes in (1, 3):
        lp, _ = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax, prior_logp=g.noised(1, smax).log_prob,
                                   method="hutchinson", n_probes=n_probes, generator=n_probes, rtol=1e-8, atol=1e-8)
        # measured 2e-8 nats
        assert (lp - exact).abs().max() < 1e-6
    # Gaussian probes are not exact (eps^T J eps = sum_i J_ii eps_i^2): the error must be visible
    lpg, _ = ode.log_likelihood(sf, x, sigma_min=smin, sigma_max=smax, prior_logp=g.noised(1, smax).log_prob,
                                method="hutchinson", probe="gaussian", generator=0, rtol=1e-8, atol=1e-8)
    assert (lpg - exact).abs().max() > 1e-2


def test_hutchinson_divergence_is_the_probe_quadratic_form():
    """divergence(method='hutchinson') = mean_p eps_p^T J eps_p, with J from batch_jacobian (a second route)."""
    gm = lab_2d()
    f = lambda y: -0.25 * gm.score_at(y, 1.0, 0.5) + 0.1 * y.flip(1) ** 2
    x = gm.sample(10, 4)
    probes = torch.randn(5, 10, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    J = ode.batch_jacobian(f, x)
    ref = torch.einsum("pni,nij,pnj->n", probes, J, probes) / 5
    v, est = ode.divergence(f, x, method="hutchinson", probes=probes)
    assert (est - ref).abs().max() < 1e-12
    assert (v - f(x)).abs().max() == 0
    _, ex = ode.divergence(f, x)
    assert (ex - torch.diagonal(J, dim1=1, dim2=2).sum(1)).abs().max() < 1e-12
    # Jacobian against central finite differences
    h = 1e-6
    fd = torch.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=F64)], dim=2)
    assert (J - fd).abs().max() < 1e-6


def test_constant_and_non_finite_fields():
    x = lab_2d().sample(6, 0)
    const = lambda y: torch.ones_like(y)  # does not depend on x: zero Jacobian, zero divergence
    assert (ode.batch_jacobian(const, x) == 0).all()
    for method, kw in (("exact", {}), ("hutchinson", {"probes": torch.ones(2, 6, 2, dtype=F64)})):
        v, div = ode.divergence(const, x, method=method, **kw)
        assert (div == 0).all() and (v == 1).all()
    # a field that ignores one coordinate
    v, div = ode.divergence(lambda y: torch.stack([y[:, 0] ** 2, y[:, 0]], 1), x)
    assert (div - 2 * x[:, 0]).abs().max() < 1e-12
    with pytest.raises(ValueError, match="NaN or infinite"):
        ode.divergence(lambda y: y / 0.0, x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ode.divergence(lambda y: torch.sqrt(y - y.detach()).sum(1, keepdim=True).expand_as(y), x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ode.batch_jacobian(lambda y: torch.log(y * 0), x)
    with pytest.raises(TypeError, match="callable"):
        ode.batch_jacobian(3, x)
    assert ode.batch_jacobian(const, x[:0]).shape[0] == 0  # an empty batch: an empty result


def test_csm_loss_needs_a_generator():
    model = ode.ScoreNet(_Zero())
    x0 = lab_2d().sample(8, 0)
    assert torch.isfinite(ode.csm_loss(model, x0, None))  # None: torch's global generator
    with pytest.raises(TypeError, match="generator"):
        ode.csm_loss(model, x0, 1.5)
    with pytest.raises(ValueError, match="p_mean"):
        ode.csm_loss(model, x0, 0, p_mean=float("nan"))
    a, b = ode.csm_loss(model, x0, 3), ode.csm_loss(model, x0, torch.Generator().manual_seed(3))
    assert a.item() == b.item()


class _Zero(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


# ============================================================================ training pieces
def test_scorenet_with_zero_net_is_the_gaussian_score():
    """With F = 0 the preconditioned denoiser is c_skip x, the Bayes denoiser of N(0, sd^2 I)."""

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    sd = 0.8
    model = ode.ScoreNet(Zero(), sigma_data=sd).double()
    x = gaussian(sd).noised(1, 1.3).sample(50, 15)
    ref = ode.gmm_score_fn(gaussian(sd))
    for s in (0.01, 1.3, 40.0):
        assert (model(x, s) - ref(x, s)).abs().max() < 1e-10
    # csm_loss: the Bayes denoiser's weighted error has expectation exactly 1 at every sigma
    n = 100_000
    x0 = gaussian(sd).sample(n, 16)
    loss = ode.csm_loss(model, x0, torch.Generator().manual_seed(0)).item()
    # per-sample loss = mean of 2 chi^2_1 variables -> SE = 1/sqrt(n); measured |z| <= 1.78 over seeds 0-9
    assert abs(loss - 1) < 4 / math.sqrt(n)


# ============================================================================ validation
def test_validation_errors(gm, sf):
    x = gm.sample(5, 0)
    good = ode.sigma_grid(4, 0.1, 10.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ode.sample_euler(sf, x, good.flip(0))
    with pytest.raises(ValueError, match="sigma_min"):
        ode.sample_heun(sf, x, torch.tensor([1.0, 0.5, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="at least 2"):
        ode.sample_rk4(sf, x, torch.tensor([1.0], dtype=F64))
    with pytest.raises(ValueError, match="sigma_min"):
        ode.sigma_grid(4, 0.0, 10.0)
    with pytest.raises(ValueError, match="sigma_min"):
        ode.sigma_grid(4, -1.0, 10.0)
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        ode.sigma_grid(4, 1.0, 0.5)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        ode.sample_euler(lambda y, s: y[:, :1], x, good)
    with pytest.raises(ValueError, match="NaN"):
        ode.sample_euler(lambda y, s: y * float("nan"), x, good)
    with pytest.raises(TypeError, match="score_fn must return a torch.Tensor"):
        ode.sample_euler(lambda y, s: 0.0, x, good)
    with pytest.raises(TypeError, match="score_fn must be callable"):
        ode.sample_euler(None, x, good)
    with pytest.raises(TypeError, match="callback must be callable"):
        ode.sample_euler(sf, x, good, callback=3)
    with pytest.raises(ValueError, match="extra_velocity must return"):
        ode.sample_euler(sf, x, good, extra_velocity=lambda y, s: y[:1])
    with pytest.raises(ValueError, match="at least 2 dims"):
        ode.sample_euler(sf, x[:, 0], good)
    with pytest.raises(TypeError, match="sigmas must be a torch.Tensor"):
        ode.sample_euler(sf, x, [1.0, 0.5])
    with pytest.raises(ValueError, match="sigma_fn"):
        ode.heat_drift(sf, x, 0.0, lambda t: 50 * t)  # sigma(0) = 0
    with pytest.raises(TypeError, match="sigma_fn"):
        ode.heat_drift(sf, x, 0.5, lambda t: 1.0)
    with pytest.raises(TypeError, match="schedule"):
        ode.pf_ode_drift("vp", lambda y, t: y, x, 0.5)
    with pytest.raises(TypeError, match="schedule"):
        ode.vp_to_heat(None, x, 0.5)
    with pytest.raises(ValueError, match="method"):
        ode.log_likelihood(sf, x, sigma_min=0.1, sigma_max=1.0, method="trace")
    with pytest.raises(ValueError, match="probe"):
        ode.log_likelihood(sf, x, sigma_min=0.1, sigma_max=1.0, method="hutchinson", probe="uniform")
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        ode.log_likelihood(sf, x, sigma_min=1.0, sigma_max=0.1)
    with pytest.raises(ValueError, match="prior_logp must return"):
        ode.log_likelihood(sf, x, sigma_min=0.5, sigma_max=1.0, prior_logp=lambda z: z)
    with pytest.raises(ValueError, match="probes must have shape"):
        ode.divergence(lambda y: y, x, method="hutchinson")
    with pytest.raises(ValueError, match="method"):
        ode.divergence(lambda y: y, x, method="fd")
    with pytest.raises(ValueError, match="fn must return"):
        ode.divergence(lambda y: y[:, :1], x)
    with pytest.raises(ValueError, match="fn must return"):
        ode.batch_jacobian(lambda y: y[:, :1], x)
    with pytest.raises(ValueError, match="fn must return"):
        ode.solve_adaptive(lambda y, t: y[:1], x, 0.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        ode.solve_adaptive(lambda y, t: y / 0.0, x, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="max_steps"):
        ode.solve_adaptive(lambda y, t: -y, x, 0.0, 1.0, max_steps=1)
    with pytest.raises(TypeError, match="GaussianMixture"):
        ode.gmm_score_fn("lab")
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        sf(torch.zeros(3, 3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        ode.heat_log_density(gm, x, -1.0)
    with pytest.raises(ValueError, match="entries"):
        ode.heat_log_density(gm, x, torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="dx"):
        ode.heat_spectral_1d(torch.ones(8, dtype=F64), 0.0, 1.0)
    with pytest.raises(TypeError, match="net"):
        ode.ScoreNet("mlp")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ode.ScoreNet(torch.nn.Identity())(x, torch.zeros(5, dtype=F64))
    with pytest.raises(TypeError, match="ScoreNet"):
        ode.csm_loss(torch.nn.Identity(), x, torch.Generator())
    assert ode.solve_adaptive(lambda y, t: y, x, 1.0, 1.0)[1]["nfe"] == 0


# ---------------------------------------------------------------- Crank–Nicolson, CSM minimiser, D10 path
def test_crank_nicolson_matches_a_dense_solve_and_is_second_order():
    m, L = 64, 20.0
    dx = L / m
    x = torch.arange(m, dtype=torch.float64) * dx - L / 2
    p0 = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    sig = torch.tensor([0.0, 0.4, 0.9, 1.3], dtype=torch.float64)
    # independent dense Crank–Nicolson with the circulant second-difference matrix
    Lap = (-2 * torch.eye(m, dtype=torch.float64) + torch.roll(torch.eye(m, dtype=torch.float64), 1, 0)
           + torch.roll(torch.eye(m, dtype=torch.float64), -1, 0)) / dx**2
    p = p0.clone()
    for a in (0.5 * torch.diff(sig**2)).tolist():
        p = torch.linalg.solve(torch.eye(m, dtype=torch.float64) - 0.5 * a * Lap, p + 0.5 * a * Lap @ p)
    assert torch.allclose(ode.heat_crank_nicolson_1d(p0, dx, sig), p, atol=1e-13)
    semi = ode.heat_semidiscrete_1d(p0, dx, 1.3)
    errs = [(ode.heat_crank_nicolson_1d(p0, dx, torch.linspace(0, 1.3, N + 1, dtype=torch.float64)) - semi).abs().max().item()
            for N in (4, 8, 16, 32)]
    from companion.core.metrics import loglog_slope
    assert abs(-loglog_slope([4, 8, 16, 32], errs) - 2) < 0.15
    with pytest.raises(ValueError):
        ode.heat_crank_nicolson_1d(p0, dx, [1.0, 0.5])
    with pytest.raises(ValueError):
        ode.heat_semidiscrete_1d(p0, -1.0, 1.0)


def test_csm_piecewise_fit_is_the_cell_mean():
    x = torch.tensor([[0.1], [0.2], [0.7], [1.5], [3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0], [3.0], [5.0], [7.0], [9.0]], dtype=torch.float64)
    fit = ode.csm_piecewise_fit(x, y, torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64))
    assert fit["count"].tolist() == [2.0, 1.0, 1.0]
    assert fit["mean"][0, 0].item() == 2.0 and fit["mean"][1, 0].item() == 5.0
    assert fit["cell"].tolist() == [0, 0, 1, 2, -1]
    x2 = torch.tensor([[0.2, 1.5], [0.7, 0.2]], dtype=torch.float64)
    fit2 = ode.csm_piecewise_fit(x2, x2, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert fit2["cell"].tolist() == [1, 0]          # row-major: cell = i_x * k + i_y
    with pytest.raises(ValueError):
        ode.csm_piecewise_fit(x, y[:3], torch.tensor([0.0, 1.0]))


def test_log_density_along_path_matches_the_heat_flow():
    from companion.core.gmm import lab_2d

    gm = lab_2d()
    x = gm.noised(1, 0.05).sample(8, 3)
    sig = torch.tensor([0.05, 0.3, 2.0], dtype=torch.float64)
    xs, lp = ode.log_density_along_path(ode.gmm_score_fn(gm), x, sig, gm.noised(1, 0.05).log_prob(x), rtol=1e-8, atol=1e-8)
    for i, s in enumerate(sig.tolist()):
        assert (lp[i] - gm.noised(1, s).log_prob(xs[i])).abs().max() < 1e-6
    with pytest.raises(ValueError):
        ode.log_density_along_path(ode.gmm_score_fn(gm), x, [1.0, 0.5], lp[0])
