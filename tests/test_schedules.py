"""Schedules: converter round trips, identities, and f_t / g_t^2 against finite differences."""

import math

import numpy as np
import pytest
import torch

from companion.core.schedules import NOTATION, ContinuousSchedule, DiscreteSchedule, VESchedule, VPSchedule, su_vp


@pytest.fixture(params=["linear", "su", "cosine"])
def sched(request):
    return getattr(DiscreteSchedule, request.param)(1000)


def test_ho_round_trip(sched):
    back = DiscreteSchedule.from_ho(sched.to_ho()["betas"])
    torch.testing.assert_close(back.alpha_bar, sched.alpha_bar, rtol=0, atol=1e-12)


def test_linear_matches_an_independent_numpy_construction():
    betas = np.linspace(1e-4, 0.02, 1000)
    ho_alpha_bar = np.cumprod(1 - betas)
    s = DiscreteSchedule.linear(1000)
    np.testing.assert_allclose(s.to_ho()["alphas_cumprod"].numpy(), ho_alpha_bar, rtol=1e-12)
    post = (1 - np.r_[1.0, ho_alpha_bar[:-1]]) / (1 - ho_alpha_bar) * betas  # Ho's beta-tilde
    np.testing.assert_allclose(s.to_ho()["posterior_variance"].numpy(), post, rtol=1e-10, atol=1e-15)


def test_step_identity(sched):
    """alpha_t^2 beta_bar_{t-1}^2 + beta_t^2 = beta_bar_t^2 (telescoping of the forward chain)."""
    lhs = sched.alpha[1:] ** 2 * sched.beta_bar[:-1] ** 2 + sched.beta[1:] ** 2
    torch.testing.assert_close(lhs, sched.beta_bar[1:] ** 2, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cumprod(sched.alpha, 0), sched.alpha_bar, rtol=1e-10, atol=0)


def test_su_schedule_matches_exp_minus_5_t_squared_within_its_taylor_bound():
    T = 1000
    s = DiscreteSchedule.su(T)
    t = torch.arange(T + 1, dtype=torch.float64)
    x = 0.02 * t[1:] / T
    torch.testing.assert_close(s.alpha[1:] ** 2, 1 - x, rtol=0, atol=1e-13)
    # log alpha_bar_t = 1/2 sum log(1 - x_i) ~ -0.005 t (t + 1) / T; remainder <= sum x^2 / (4 (1 - x))
    approx = -0.005 * t * (t + 1) / T
    bound = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(x**2 / (4 * (1 - x)), 0)])
    assert ((torch.log(s.alpha_bar) - approx).abs() <= bound + 1e-12).all()
    assert abs(s.alpha_bar[-1].item() - math.exp(-5)) / math.exp(-5) < 0.05


def test_cosine_schedule_follows_its_definition_where_unclipped():
    T, s_ = 1000, 0.008
    s = DiscreteSchedule.cosine(T, s_)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2
    torch.testing.assert_close(s.alpha_bar[:900] ** 2, (f / f[0])[:900], rtol=1e-10, atol=1e-12)


def test_subsequence_uses_barred_quantities():
    s = DiscreteSchedule.su(1000)
    sub = s.subsequence(10)
    assert sub.T == 10 and sub.timesteps[0] == 0 and sub.timesteps[-1] == 1000
    torch.testing.assert_close(sub.alpha_bar, s.alpha_bar[sub.timesteps])
    torch.testing.assert_close(sub.alpha[1:], sub.alpha_bar[1:] / sub.alpha_bar[:-1])
    # the classic bug: per-step alpha of the full chain at tau_i is NOT the subsequence's step
    assert (sub.alpha[1:] - s.alpha[sub.timesteps[1:]]).abs().max() > 1e-2
    full = s.subsequence(1000)
    torch.testing.assert_close(full.alpha_bar, s.alpha_bar)
    q = s.subsequence(20, "quadratic")
    assert q.T == 20 and bool((q.timesteps[1:] > q.timesteps[:-1]).all())


def test_discrete_validation():
    with pytest.raises(ValueError, match=r"alpha_bar\[0\] must be 1"):
        DiscreteSchedule(torch.tensor([0.9, 0.5]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiscreteSchedule(torch.tensor([1.0, 0.5, 0.6]))
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        DiscreteSchedule(torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match=r"betas .* must lie in \(0, 1\)"):
        DiscreteSchedule.from_ho(torch.tensor([0.1, 1.2]))
    s = DiscreteSchedule.su(100)
    with pytest.raises(ValueError, match=r"t must be a step index in \[1, 100\]"):
        s.check_step(0)
    with pytest.raises(ValueError, match=r"t must be a step index in \[1, 100\]"):
        s.check_step(101)
    with pytest.raises(TypeError, match="t must be an int"):
        s.check_step(1.5)
    with pytest.raises(ValueError, match="steps must be <= T"):
        s.subsequence(101)
    with pytest.raises(ValueError, match="spacing"):
        s.subsequence(10, "cubic")
    with pytest.raises(TypeError, match="T must be an int"):
        DiscreteSchedule.linear(10.0)


# ----------------------------------------------------------------------------- continuous
CONT = {
    "vp": lambda: VPSchedule(0.1, 20.0),
    "su_vp": su_vp,
    "ve": lambda: VESchedule(0.01, 50.0),
}


def _fd(fn, t, h=1e-6):
    return (fn(t + h) - fn(t - h)) / (2 * h)


@pytest.mark.parametrize("name", list(CONT))
def test_f_and_g2_against_finite_differences(name):
    s = CONT[name]()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    f_fd = _fd(lambda u: torch.log(s.alpha_bar(u)), t)
    ratio = lambda u: s.beta_bar(u) ** 2 / s.alpha_bar(u) ** 2
    g2_fd = s.alpha_bar(t) ** 2 * _fd(ratio, t)
    scale = g2_fd.abs().max()
    torch.testing.assert_close(s.f(t), f_fd, rtol=0, atol=1e-6)
    torch.testing.assert_close(s.g2(t), g2_fd, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("name", list(CONT))
def test_generic_autograd_rule_equals_closed_forms(name):
    s = CONT[name]()
    generic = ContinuousSchedule(s._ab, s._bb)
    t = torch.linspace(0.01, 1.0, 50, dtype=torch.float64)
    torch.testing.assert_close(generic.f(t), s.f(t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(generic.g2(t), s.g2(t), rtol=1e-10, atol=1e-10)


def test_generic_g2_is_finite_where_beta_bar_vanishes():
    """sqrt-based beta_bar has an infinite derivative at t = 0; g2 must return the limit, not NaN."""
    s = su_vp()
    generic = ContinuousSchedule(s._ab, s._bb)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    out = generic.g2(t)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 20 * t, rtol=0, atol=1e-5)


def test_su_vp_closed_forms():
    s = su_vp()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(s.alpha_bar(t), torch.exp(-5 * t**2))
    torch.testing.assert_close(s.f(t), -10 * t)
    torch.testing.assert_close(s.g2(t), 20 * t)


def test_vp_is_variance_preserving_and_edm_view():
    s = VPSchedule()
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(s.alpha_bar(t) ** 2 + s.beta_bar(t) ** 2, torch.ones_like(t))
    sc, sig = s.edm(t[1:])
    torch.testing.assert_close(sc * sig, s.beta_bar(t[1:]))
    torch.testing.assert_close(s.song_beta(t), 0.1 + 19.9 * t)


def test_continuous_validation():
    s = VPSchedule()
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        s.alpha_bar(1.5)
    with pytest.raises(ValueError, match=r"t must lie in"):
        s.g2(torch.tensor([-0.1, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_max must be >= beta_min"):
        VPSchedule(5.0, 1.0)
    with pytest.raises(ValueError, match="sigma_max must be > sigma_min"):
        VESchedule(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_min must be finite and > 0"):
        VESchedule(0.0, 1.0)
    with pytest.raises(TypeError, match="callables"):
        ContinuousSchedule(1.0, 2.0)


def test_notation_table_has_five_columns():
    assert all(len(row) == 5 for row in NOTATION) and len(NOTATION) >= 8


def test_times_refuse_empty_and_half_precision():
    from companion.core.schedules import su_vp

    s = su_vp()
    with pytest.raises(ValueError, match="empty"):
        s.alpha_bar(torch.tensor([], dtype=torch.float64))
    with pytest.raises(TypeError, match="only float32 and float64"):
        s.alpha_bar(torch.tensor(0.5, dtype=torch.float16))


def test_to_ho_arrays_in_closed_form():
    """Ho et al.'s arrays from the book's: alphas = 1 - betas, alphas_cumprod their running product,
    posterior_variance = betas (1 - alphas_cumprod[t-1]) / (1 - alphas_cumprod[t])."""
    betas = torch.linspace(1e-3, 0.05, 30, dtype=torch.float64)
    ho = DiscreteSchedule.from_ho(betas).to_ho()
    assert torch.allclose(ho["alphas"], 1 - betas, rtol=1e-12)
    cum = torch.cumprod(1 - betas, 0)
    assert torch.allclose(ho["alphas_cumprod"], cum, rtol=1e-12)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), cum[:-1]])
    assert torch.allclose(ho["posterior_variance"], betas * (1 - prev) / (1 - cum), rtol=1e-10)


def test_subsequence_of_one_step_and_quadratic_spacing():
    full = DiscreteSchedule.linear(100)
    one = full.subsequence(1)
    assert one.T == 1 and one.timesteps.tolist() == [0, 100]
    q = full.subsequence(5, "quadratic")
    # (i sqrt(T) / S)^2 rounded: 0, 4, 16, 36, 64, 100
    assert q.timesteps.tolist() == [0, 4, 16, 36, 64, 100]


def test_vp_with_a_constant_beta_and_the_generic_g2_limit_at_zero():
    c = VPSchedule(2.0, 2.0)  # beta(t) = 2: alpha_bar = exp(-t)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    assert torch.allclose(c.alpha_bar(t), torch.exp(-t), rtol=1e-12)
    assert torch.allclose(c.g2(t), torch.full((3,), 2.0, dtype=torch.float64))
    # the generic autograd path (no closed-form override): beta_bar = sqrt(1 - alpha_bar^2) has an
    # infinite derivative at t = 0, where g2 takes the right-hand limit beta(0) = beta_min
    vp = VPSchedule(0.1, 20.0)
    generic = ContinuousSchedule(vp._ab, vp._bb)
    g2 = generic.g2(t)
    assert torch.isfinite(g2).all()
    assert abs(g2[0].item() - 0.1) < 1e-4  # the limit taken at t = 1e-7: beta(1e-7) - 0.1 = 2e-6
    assert torch.allclose(g2[1:], vp.g2(t[1:]), rtol=1e-9)
    assert torch.allclose(generic.f(t), vp.f(t), rtol=1e-12)
