"""Property-based tests (hypothesis) of the core: gmm, schedules, ddpm, sde, ode, metrics.

Each property holds for *every* input the strategy draws: shapes and dtypes follow the input,
round trips close (x0 -> x_t -> x0 with the true noise, Ho <-> book schedules), closed forms
agree with autograd, and bad input (a NaN anywhere, a time out of range) always raises a clear
error. Examples are few and small so the file runs in a few seconds.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import ddpm, metrics, ode
from companion import sde as S
from companion.core.gmm import GaussianMixture
from companion.core.schedules import DiscreteSchedule, VESchedule, VPSchedule

F64 = torch.float64
FAST = settings(max_examples=25, deadline=None, derandomize=True)

floats = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)


@st.composite
def mixtures(draw):
    K = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    w = torch.tensor(draw(st.lists(st.floats(0.1, 1.0), min_size=K, max_size=K)), dtype=F64)
    means = torch.tensor(draw(st.lists(st.lists(floats, min_size=d, max_size=d), min_size=K, max_size=K)), dtype=F64)
    var = torch.tensor(draw(st.lists(st.lists(st.floats(0.05, 2.0), min_size=d, max_size=d), min_size=K,
                                     max_size=K)), dtype=F64)
    return GaussianMixture(w / w.sum(), means, var)


def points(gm, n, seed):
    return torch.randn(n, gm.dim, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2


# ====================================================================== gmm
@FAST
@given(gm=mixtures(), seed=st.integers(0, 1000), a=st.floats(0.1, 1.0), b=st.floats(0.05, 2.0))
def test_gmm_score_is_the_gradient_and_tweedie_closes(gm, seed, a, b):
    x = points(gm, 5, seed)
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(gm.log_prob(xx).sum(), xx)
    assert torch.allclose(gm.score(x), g, rtol=1e-9, atol=1e-9)
    # the noised law's score by autograd; Tweedie: x0_hat = (x_t + b^2 score) / a = posterior mean
    noised = gm.noised(a, b)
    xx = x.clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(noised.log_prob(xx).sum(), xx)
    assert torch.allclose(gm.score_at(x, a, b), gt, rtol=1e-8, atol=1e-8)
    den = gm.denoise(x, a, b)
    assert torch.allclose(den, (x + b**2 * gt) / a, rtol=1e-8, atol=1e-8)
    assert torch.allclose(gm.posterior(x, a, b).mean(), den, rtol=1e-8, atol=1e-8)
    # x_t = a x0_hat + b eps_hat
    assert torch.allclose(a * den + b * gm.eps_prediction(x, a, b), x, rtol=1e-9, atol=1e-9)
    # responsibilities are a distribution; dtype follows the input
    r = gm.responsibilities(x)
    assert torch.allclose(r.sum(1), torch.ones(5, dtype=F64)) and (r >= 0).all()
    assert gm.score(x.float()).dtype == torch.float32 and gm.log_prob(x.float()).shape == (5,)


@FAST
@given(gm=mixtures(), seed=st.integers(0, 1000))
def test_gmm_score_divergence_is_the_jacobian_trace(gm, seed):
    x = points(gm, 4, seed)
    J = ode.batch_jacobian(gm.score, x)
    assert torch.allclose(gm.score_divergence(x), torch.diagonal(J, dim1=1, dim2=2).sum(1), rtol=1e-8, atol=1e-8)


@FAST
@given(gm=mixtures(), i=st.integers(0, 4), j=st.integers(0, 2), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_gmm_refuses_a_non_finite_entry_anywhere(gm, i, j, bad):
    x = points(gm, 5, 0)
    x[i, j % gm.dim] = bad
    for fn in (gm.log_prob, gm.score, gm.score_divergence, lambda z: gm.denoise(z, 0.5, 0.5)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            fn(x)


# ================================================================ schedules
betas_st = st.lists(st.floats(1e-5, 0.5), min_size=1, max_size=40)


@FAST
@given(betas=betas_st)
def test_schedule_ho_round_trip_and_identities(betas):
    b = torch.tensor(betas, dtype=F64)
    s = DiscreteSchedule.from_ho(b)
    ho = s.to_ho()
    assert torch.allclose(ho["betas"], b, rtol=1e-9, atol=1e-12)
    assert torch.allclose(s.alpha_bar**2 + s.beta_bar**2, torch.ones(s.T + 1, dtype=F64), atol=1e-12)
    assert torch.allclose(s.alpha[1:] ** 2 + s.beta[1:] ** 2, torch.ones(s.T, dtype=F64), atol=1e-12)
    # alpha_bar is the running product of the per-step alphas; sigma is the noise-to-signal ratio
    assert torch.allclose(torch.cumprod(s.alpha[1:], 0), s.alpha_bar[1:], rtol=1e-10)
    assert torch.allclose(s.sigma, s.beta_bar / s.alpha_bar, rtol=1e-12)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all() and s.alpha_bar[0] == 1


@FAST
@given(T=st.integers(2, 300), steps=st.integers(1, 300), spacing=st.sampled_from(["uniform", "quadratic"]))
def test_subsequence_keeps_the_endpoints_and_the_marginals(T, steps, spacing):
    full = DiscreteSchedule.linear(T)
    steps = min(steps, T)
    sub = full.subsequence(steps, spacing)
    assert sub.T == steps and int(sub.timesteps[0]) == 0 and int(sub.timesteps[-1]) == T
    assert (sub.timesteps[1:] > sub.timesteps[:-1]).all()
    assert torch.equal(sub.alpha_bar, full.alpha_bar[sub.timesteps])


@FAST
@given(t=st.floats(0.01, 0.99), which=st.sampled_from(["vp", "ve"]))
def test_continuous_f_and_g2_match_finite_differences(t, which):
    sch = VPSchedule() if which == "vp" else VESchedule()
    h = 1e-5
    tt = torch.tensor([t - h, t, t + h], dtype=F64)
    ab, bb = sch.alpha_bar(tt), sch.beta_bar(tt)
    f = (torch.log(ab[2]) - torch.log(ab[0])) / (2 * h)
    dbb2 = (bb[2] ** 2 - bb[0] ** 2) / (2 * h)
    g2 = dbb2 - 2 * f * bb[1] ** 2
    assert abs(sch.f(t).item() - f.item()) <= 1e-5 * (1 + abs(f.item()))
    assert abs(sch.g2(t).item() - g2.item()) <= 1e-5 * (1 + abs(g2.item()))


# ===================================================================== ddpm
@FAST
@given(T=st.integers(2, 200), t=st.integers(1, 200), n=st.integers(1, 6), d=st.integers(1, 4),
       seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float32, F64]))
def test_ddpm_round_trip_x0_xt_x0(T, t, n, d, seed, dtype):
    sched = DiscreteSchedule.cosine(T)
    t = min(t, T)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=dtype)
    eps = torch.randn(n, d, generator=g, dtype=dtype)
    xt = ddpm.q_sample(sched, x0, t, eps)
    assert xt.shape == x0.shape and xt.dtype == dtype
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    # x0 -> x_t -> x0 with the true noise (the exact denoiser of a point mass), and back to eps
    back = ddpm.x0_from_eps(sched, t, xt, eps)
    assert torch.allclose(back, x0, rtol=tol, atol=tol * (1 + sched.sigma[t].item()))
    assert torch.allclose(ddpm.eps_from_x0(sched, t, xt, x0), eps, rtol=tol, atol=tol * (1 + 1 / sched.beta_bar[t].item()))
    # the posterior mean is the DDPM step's mean (eta = 1, noise switched off by noise = 0)
    mean, var = ddpm.posterior(sched, t, xt, x0)
    step, _ = ddpm.ddpm_step(sched, t, xt, eps, noise=torch.zeros_like(xt))
    assert torch.allclose(step, mean, rtol=tol, atol=tol)
    assert var.item() >= 0


@FAST
@given(T=st.integers(2, 100), t=st.integers(-5, 110))
def test_ddpm_times_out_of_range_always_raise(T, t):
    sched = DiscreteSchedule.linear(T)
    x = torch.zeros(2, 2, dtype=F64)
    if 1 <= t <= T:
        ddpm.posterior(sched, t, x, x)
    else:
        with pytest.raises(ValueError, match="t must"):
            ddpm.posterior(sched, t, x, x)
    if 0 <= t <= T:
        ddpm.q_sample(sched, x, t, x)
    else:
        with pytest.raises(ValueError, match="t must"):
            ddpm.q_sample(sched, x, t, x)


# ====================================================================== sde
@FAST
@given(t=st.floats(0.01, 0.98), dt=st.floats(0.001, 0.5), which=st.sampled_from(["vp", "ve"]))
def test_sde_transitions_compose_with_the_marginals(t, dt, which):
    sde = S.VPSDE() if which == "vp" else S.VESDE()
    s = min(t + dt, 1.0)
    a, b = sde.transition(t, s)
    ab_t, bb_t = sde.alpha_bar(t).item(), sde.beta_bar(t).item()
    ab_s, bb_s = sde.alpha_bar(s).item(), sde.beta_bar(s).item()
    assert abs(a * ab_t - ab_s) <= 1e-10 * (1 + ab_s)
    assert abs(a**2 * bb_t**2 + b**2 - bb_s**2) <= 1e-9 * (1 + bb_s**2)
    x0 = torch.ones(3, 2, dtype=F64)
    m, sd = sde.marginal(x0, t)
    assert torch.allclose(m, ab_t * x0) and abs(float(sd) - bb_t) < 1e-12


@FAST
@given(t=st.one_of(st.floats(-10, -1e-6), st.floats(1.0 + 1e-6, 10), st.just(math.nan)))
def test_sde_times_outside_the_interval_raise(t):
    with pytest.raises(ValueError):
        S.VPSDE().marginal(torch.zeros(2, 2, dtype=F64), t)


# ====================================================================== ode
@FAST
@given(n=st.integers(1, 50), smin=st.floats(1e-3, 1.0), ratio=st.floats(1.5, 1e4), rho=st.floats(0.5, 10))
def test_sigma_grid_is_decreasing_with_exact_endpoints(n, smin, ratio, rho):
    s = ode.sigma_grid(n, smin, smin * ratio, rho)
    assert s.shape == (n + 1,) and s.dtype == F64
    assert s[0].item() == smin * ratio and s[-1].item() == smin
    assert (s[1:] < s[:-1]).all()
    u = ode.sigma_grid(n, smin, smin * ratio, 1.0)  # rho = 1: uniform in sigma
    assert torch.allclose(torch.diff(u), torch.full((n,), (smin - smin * ratio) / n, dtype=F64), rtol=1e-9)


@FAST
@given(n=st.integers(1, 5), d=st.integers(1, 4), std=st.floats(0.1, 10), seed=st.integers(0, 100))
def test_gaussian_log_prob_matches_torch_normal(n, d, std, seed):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    ref = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.tensor(std, dtype=F64)).log_prob(x).sum(1)
    assert torch.allclose(ode.gaussian_log_prob(x, std), ref, rtol=1e-12, atol=1e-10)


# ================================================================== metrics
samples = st.lists(floats, min_size=2, max_size=30)


@FAST
@given(x=samples, c=floats)
def test_w1_1d_is_a_metric_and_shift_equivariant(x, c):
    xt = torch.tensor(x, dtype=F64)
    perm = xt.flip(0)
    assert metrics.w1_1d(xt, perm) < 1e-12  # same empirical law
    assert abs(metrics.w1_1d(xt, xt + c) - abs(c)) < 1e-9
    y = xt * 0.5 + 1
    assert abs(metrics.w1_1d(xt, y) - metrics.w1_1d(y, xt)) < 1e-12


@FAST
@given(p=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8), seed=st.integers(0, 100))
def test_total_variation_bounds(p, seed):
    pt = torch.tensor(p, dtype=F64) + 1e-3
    pt = pt / pt.sum()
    q = torch.rand(len(p), generator=torch.Generator().manual_seed(seed), dtype=F64) + 1e-3
    q = q / q.sum()
    tv = metrics.total_variation(pt, q)
    assert 0 <= tv <= 1 and abs(tv - metrics.total_variation(q, pt)) < 1e-15
    assert tv == pytest.approx(0.5 * (pt - q).abs().sum().item(), abs=1e-12)
    assert metrics.total_variation(pt, pt) == 0


@FAST
@given(seed=st.integers(0, 100), n=st.integers(3, 20), shift=st.floats(0.5, 3.0))
def test_mmd_is_symmetric_permutation_invariant_and_grows_with_a_shift(seed, n, shift):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=F64)
    y = torch.randn(n + 1, 2, generator=g, dtype=F64)
    m = metrics.mmd_rbf(x, y, bandwidth=1.0)
    assert abs(m - metrics.mmd_rbf(y, x, bandwidth=1.0)) < 1e-12
    assert abs(m - metrics.mmd_rbf(x.flip(0), y.flip(0), bandwidth=1.0)) < 1e-12
    far = metrics.mmd_rbf(x, x + shift, bandwidth=1.0)
    near = metrics.mmd_rbf(x, x + shift / 4, bandwidth=1.0)
    assert far > near


@FAST
@given(x=st.lists(st.floats(0.1, 100), min_size=3, max_size=10, unique=True), k=st.floats(-3, 3),
       c=st.floats(0.1, 10))
def test_loglog_slope_recovers_a_power_law(x, k, c):
    xs = sorted(x)
    if xs[-1] / xs[0] < 1.01:
        return
    ys = [c * v**k for v in xs]
    assert abs(metrics.loglog_slope(xs, ys) - k) < 1e-6
