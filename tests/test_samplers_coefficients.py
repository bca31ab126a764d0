"""The fast samplers' *coefficients*, not only their convergence.

A sampler with a wrong coefficient can still converge (a correction term off by a factor of two
costs one order, a noise level taken at the wrong end of the step costs O(h) per step), so the
convergence checks of test_samplers.py cannot see it. Each test here pins a formula against an
independent one:

* Lu et al.'s DPM-Solver++(2M) (their Algorithm 2) written out in x, and the "taylor" variant as
  the exact integral of the linear interpolant;
* 2M-SDE at eta = 0 is 2M; Euler-ancestral at eta = 1 is chapter 1's Bayes posterior step;
* one 2M-SDE step of a point mass is its exact reverse transition (Bayes, with the same noise);
* the multistep steps integrate e^l P(l) exactly for polynomials P of the promised degree, and
  not one degree more;
* the order of the stochastic samplers' drift (noise off, against DOP853) and their weak order
  (variance of a Gaussian law, Monte Carlo);
* the preconditioning probe F(u, c) = u + c exposes c_skip, c_out, c_in and c_noise separately.
"""

import math

import numpy as np
import pytest
import torch

from companion import DiscreteSchedule, ddpm, lab_1d, lab_2d, ode
from companion import samplers as S

F64 = torch.float64
SMIN, SMAX = 2e-3, 80.0


@pytest.fixture(scope="module")
def lab():
    gm = lab_2d()
    return gm, S.gmm_denoiser(gm)


# ================================================================== DPM-Solver++(2M) variants
def lu_2m(den, x, sig, lower_order_final):
    """Lu et al. (2022), Algorithm 2, in x with h = log(sigma_i / sigma_{i+1})."""
    old, h_old = None, None
    n = len(sig) - 1
    for i in range(n):
        d = den(x, sig[i])
        h = math.log(sig[i] / sig[i + 1])
        if old is None or (lower_order_final and i == n - 1):
            big_d = d
        else:
            r = h_old / h
            big_d = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
        x = (sig[i + 1] / sig[i]) * x - math.expm1(-h) * big_d
        old, h_old = d, h
    return x


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("lower", [False, True])
def test_dpmpp_2m_is_lu_et_al_algorithm_2(lab, steps, lower):
    gm, den = lab
    x = gm.noised(1, SMAX).sample(200, 3)
    grid = ode.sigma_grid(steps, SMIN, SMAX)
    got, info = S.sample_dpmpp_2m(den, x, grid, lower_order_final=lower)
    want = lu_2m(den, x, grid.tolist(), lower)
    assert info["nfe"] == steps
    assert ((got - want).abs() / (1 + want.abs())).max() < 1e-12


def test_lower_order_final_is_on_below_fifteen_steps(lab):
    gm, den = lab
    x = gm.noised(1, SMAX).sample(50, 4)
    for steps, auto in ((10, True), (14, True), (15, False), (20, False)):
        grid = ode.sigma_grid(steps, SMIN, SMAX)
        default, _ = S.sample_dpmpp_2m(den, x, grid)
        explicit, _ = S.sample_dpmpp_2m(den, x, grid, lower_order_final=auto)
        other, _ = S.sample_dpmpp_2m(den, x, grid, lower_order_final=not auto)
        assert torch.equal(default, explicit)
        assert (default - other).abs().max() > 1e-6
    with pytest.raises(TypeError, match="lower_order_final"):
        S.sample_dpmpp_2m(den, x, ode.sigma_grid(10, SMIN, SMAX), lower_order_final=1)


def test_dpmpp_2m_taylor_is_the_exact_integral_of_the_line(lab):
    """y = x/sigma, tau = 1/sigma, l = log tau; written out without quadrature."""
    gm, den = lab
    x = gm.noised(1, SMAX).sample(100, 1)
    grid = ode.sigma_grid(15, SMIN, SMAX)
    sig = grid.tolist()
    y, d_old, h_old = x / sig[0], None, None
    for i in range(len(sig) - 1):
        d = den(y * sig[i], sig[i])
        t0, t1 = 1 / sig[i], 1 / sig[i + 1]
        h = math.log(t1 / t0)
        y = y + (t1 - t0) * d
        if d_old is not None:
            y = y + (h * t1 - t1 + t0) * (d - d_old) / h_old
        d_old, h_old = d, h
    got, info = S.sample_dpmpp_2m_taylor(den, x, grid)
    assert info["nfe"] == 15
    assert ((got - y * sig[-1]).abs() / (1 + y.abs() * sig[-1])).max() < 1e-12
    mid, _ = S.sample_dpmpp_2m(den, x, grid)
    assert (mid - got).abs().max() > 1e-4  # two different formulas


def test_midpoint_2m_beats_taylor_on_a_coarse_grid(lab):
    """The reason the paper's coefficient is the default: on lab_2d at 10 steps the midpoint
    form's pathwise error is well below the taylor form's (measured 0.27 against 0.46 over
    seeds 0-4, each within 0.02)."""
    gm, den = lab
    x = gm.noised(1, SMAX).sample(400, 5)
    ref, _ = S.reference_solution(den, x, SMAX, SMIN, rtol=1e-10, atol=1e-10)
    grid = ode.sigma_grid(10, SMIN, SMAX)
    e_mid = S.pathwise_error(S.sample_dpmpp_2m(den, x, grid, lower_order_final=False)[0], ref)
    e_tay = S.pathwise_error(S.sample_dpmpp_2m_taylor(den, x, grid, lower_order_final=False)[0], ref)
    assert e_mid < 0.75 * e_tay


def test_lower_order_final_rescues_ten_step_unipc_with_the_exact_denoiser(lab):
    """The 10-step breakdown of high-order multistep samplers is the last, longest step in
    log sigma, not a network's error: it happens with the exact denoiser, and lowering the
    order of the final steps removes it (lab_2d, seeds 0-1: Euler 0.28-0.29, UniPC-3 0.82-0.84
    without, 0.25-0.26 with)."""
    gm, den = lab
    x = gm.noised(1, SMAX).sample(400, 6)
    ref, _ = S.reference_solution(den, x, SMAX, SMIN, rtol=1e-10, atol=1e-10)
    grid = ode.sigma_grid(10, SMIN, SMAX)
    e_euler = S.pathwise_error(ode.sample_euler(ode.gmm_score_fn(gm), x, grid)[0], ref)
    e_off = S.pathwise_error(S.sample_unipc(den, x, grid, lower_order_final=False)[0], ref)
    e_on = S.pathwise_error(S.sample_unipc(den, x, grid, lower_order_final=True)[0], ref)
    assert e_off > 2 * e_euler      # without it, far worse than Euler
    assert e_on < e_euler           # with it, better than Euler
    assert e_on < 0.4 * e_off


# ================================================================== identities between samplers
@pytest.mark.parametrize("steps", [8, 20])
def test_2m_sde_at_eta_zero_is_2m(lab, steps):
    gm, den = lab
    x = gm.noised(1, SMAX).sample(100, 7)
    grid = ode.sigma_grid(steps, SMIN, SMAX)
    a, _ = S.sample_dpmpp_2m_sde(den, x, grid, generator=0, eta=0.0)
    b, _ = S.sample_dpmpp_2m(den, x, grid)
    assert ((a - b).abs() / (1 + b.abs())).max() < 1e-12


def test_euler_ancestral_at_eta_one_is_the_ddpm_posterior_step(lab):
    """One step sigma_t -> sigma_{t-1} of the VE chain is DDPM's ancestral step with the Bayes
    posterior of chapter 1 (ddpm.posterior), in the scaled variable x_VE = x_VP / alpha_bar."""
    gm, den = lab
    sched = DiscreteSchedule.linear(1000).subsequence(10)
    for t in (10, 6, 2):
        ab_t, ab_s = sched.alpha_bar[t].item(), sched.alpha_bar[t - 1].item()
        s_t, s_s = sched.sigma[t].item(), sched.sigma[t - 1].item()   # beta_bar / alpha_bar
        x_ve = gm.noised(1, s_t).sample(300, t)
        got, _ = S.sample_euler_ancestral(den, x_ve, torch.tensor([s_t, s_s], dtype=F64),
                                          generator=torch.Generator().manual_seed(11))
        mean, var = ddpm.posterior(sched, t, ab_t * x_ve, den(x_ve, s_t))
        xi = torch.randn(x_ve.shape, generator=torch.Generator().manual_seed(11), dtype=F64)
        want = (mean + var.sqrt() * xi) / ab_s
        assert ((got - want).abs() / (1 + want.abs())).max() < 1e-10


@pytest.mark.parametrize("s_prev,s_next", [(10.0, 1.0), (1.0, 0.3), (0.05, 0.002)])
def test_2m_sde_step_is_the_exact_reverse_transition_of_a_point_mass(s_prev, s_next):
    """For a point mass at mu the denoiser is mu, and Bayes gives the reverse transition
    x' ~ N(mu + (s'/s)^2 (x - mu), s'^2 (1 - (s'/s)^2)). One 2M-SDE step (eta = 1) and one
    Euler-ancestral step must be it, noise for noise."""
    mu = torch.tensor([0.7, -1.2], dtype=F64)
    den = lambda z, s: mu.expand_as(z)
    x = mu + s_prev * torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    grid = torch.tensor([s_prev, s_next], dtype=F64)
    q = (s_next / s_prev) ** 2
    xi = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    want = mu + q * (x - mu) + s_next * math.sqrt(1 - q) * xi
    for fn in (S.sample_dpmpp_2m_sde, S.sample_euler_ancestral):
        got, _ = fn(den, x, grid, generator=torch.Generator().manual_seed(5))
        assert (got - want).abs().max() < 1e-10, fn.__name__


# ================================================================== multistep weights
def int_exp_poly(m: int, a: float, b: float) -> float:
    """Closed form of the integral of e^t t^m over [a, b]: e^t sum_k (-1)^k m!/(m-k)! t^(m-k)."""
    def antider(t):
        return math.exp(t) * sum((-1) ** k * math.perm(m, k) * t ** (m - k) for k in range(m + 1))
    return antider(b) - antider(a)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("corrector", [False, True])
def test_multistep_weights_integrate_e_times_polynomials_exactly(order, corrector):
    """A k-node step integrates e^l P(l) exactly for deg P < k, and not for deg P = k."""
    ell = [-4.0, -3.1, -2.5, -1.2, 0.3, 1.0, 1.4]
    pred, corr = S._multistep_plan(ell, order, corrector, False)
    for i in range(order - 1, len(ell) - 2):
        nodes = [ell[i - j] for j in range(order)]
        checks = [(pred[i], nodes, order)]
        if corrector:
            checks.append((corr[i], [ell[i + 1]] + nodes, order + 1))
        for w, nd, k in checks:
            for m in range(k + 1):
                exact = int_exp_poly(m, ell[i], ell[i + 1])
                got = sum(wj * t**m for wj, t in zip(w, nd, strict=True))
                if m < k:
                    assert abs(got - exact) < 1e-9 * max(1.0, abs(exact)), (i, m, k)
                else:
                    assert abs(got - exact) > 1e-6 * max(1.0, abs(exact)), (i, m, k)


@pytest.mark.parametrize(("name", "degree"), [("dpmpp_2m_taylor", 1), ("dpmpp_3m", 2), ("unipc_3", 3)])
def test_steps_are_exact_for_a_polynomial_residual(name, degree):
    """End to end: a denoiser P(l) with l = -log sigma that does not depend on x makes
    dy/dtau = P(l), so every step's increment of y = x / sigma must be the exact integral of
    e^l P(l) once the sampler has enough nodes (and not for a polynomial one degree higher)."""
    fn = {"dpmpp_2m_taylor": S.sample_dpmpp_2m_taylor, "dpmpp_3m": S.sample_dpmpp_3m,
          "unipc_3": lambda d, x, g, **k: S.sample_unipc(d, x, g, order=3, **k)}[name]
    grid = ode.sigma_grid(12, 0.05, 20.0)
    sig = grid.tolist()
    x0 = torch.zeros(1, 1, dtype=F64)
    for deg, exact_expected in ((degree, True), (degree + 1, False)):
        coef = [0.3, -0.7, 0.25, -0.05, 0.011][: deg + 1]

        def den(z, s, coef=coef):
            ell = -math.log(s)
            return torch.full_like(z, sum(c * ell**m for m, c in enumerate(coef)))

        xs: list[float] = []
        fn(den, x0, grid, lower_order_final=False, callback=lambda info, xs=xs: xs.append(info["x"].item()))
        out, _ = fn(den, x0, grid, lower_order_final=False)
        xs.append(out.item())
        first_exact = degree  # steps 0..degree-1 run with fewer nodes
        last = len(sig) - 2 if name == "unipc_3" else len(sig) - 1  # no corrector after the last step
        for i in range(first_exact, last):
            inc = xs[i + 1] / sig[i + 1] - xs[i] / sig[i]
            a, b = -math.log(sig[i]), -math.log(sig[i + 1])
            exact = sum(c * int_exp_poly(m, a, b) for m, c in enumerate(coef))
            if exact_expected:
                assert abs(inc - exact) < 1e-9 * max(1.0, abs(exact)), (name, i)
        if not exact_expected:
            i = len(sig) - 4
            inc = xs[i + 1] / sig[i + 1] - xs[i] / sig[i]
            a, b = -math.log(sig[i]), -math.log(sig[i + 1])
            assert abs(inc - sum(c * int_exp_poly(m, a, b) for m, c in enumerate(coef))) > 1e-7


# ================================================================== order of the stochastic samplers
def _drift_reference(den, x, eta: float) -> torch.Tensor:
    """Without its noise (s_noise = 0), a sampler of the reverse-SDE family with noise eta solves
    dx/dsigma = (1 + eta^2)(x - D(x, sigma))/sigma; DOP853 at 1e-12 in u = log sigma."""
    from scipy.integrate import solve_ivp

    def f(u, y):
        xx = torch.from_numpy(y).reshape(x.shape)
        return ((1 + eta**2) * (xx - den(xx, math.exp(u)))).reshape(-1).numpy()

    sol = solve_ivp(f, (math.log(SMAX), math.log(SMIN)), x.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-12)
    return torch.from_numpy(sol.y[:, -1]).reshape(x.shape)


@pytest.mark.parametrize(("name", "order"), [("euler_ancestral", 1), ("dpmpp_2m_sde", 2)])
def test_noise_free_drift_has_the_promised_order(name, order):
    """The drift of each stochastic sampler (noise switched off) converges to the reverse-SDE drift
    ODE at its order: slope of the max error over 64/128/256 steps on lab_1d, measured 1.07 and
    2.16. A doubled second-order correction in 2M-SDE still converges, at slope 1.21: caught."""
    gm = lab_1d()
    den = S.gmm_denoiser(gm)
    x = torch.linspace(-2.5, 2.5, 21, dtype=F64)[:, None] * SMAX
    ref = _drift_reference(den, x, 1.0)
    fn = {"euler_ancestral": S.sample_euler_ancestral, "dpmpp_2m_sde": S.sample_dpmpp_2m_sde}[name]
    kw = {} if name == "euler_ancestral" else {"lower_order_final": False}
    ns = [64, 128, 256]
    errs = [float((fn(den, x, ode.sigma_grid(n, SMIN, SMAX), generator=0, s_noise=0.0, **kw)[0] - ref).abs().max())
            for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3, (name, slope, errs)


@pytest.mark.parametrize(("name", "order", "ns"), [("euler_ancestral", 1, [32, 64, 128, 256]),
                                                   ("dpmpp_2m_sde", 2, [32, 64, 128])])
def test_weak_order_of_the_stochastic_samplers(name, order, ns):
    """Weak order, with the noise: the error of the variance of n samples of a Gaussian law
    N(0.4, 0.6^2) against the exact s^2 + sigma_min^2, over the number of steps. The standard
    error of the variance, 0.36 sqrt(2/n), is 9e-4 for Euler-ancestral (n = 3e5; its smallest
    error here is 0.016) and 5e-4 for 2M-SDE (n = 1e6; smallest error 1.4e-3). Slopes measured
    over seeds 1-2: 0.88-0.90 for Euler-ancestral, 2.0-2.2 for 2M-SDE."""
    mu, s = 0.4, 0.6
    den = lambda x, sigma: mu + s**2 / (s**2 + sigma**2) * (x - mu)   # Tweedie for N(mu, s^2)
    fn = {"euler_ancestral": S.sample_euler_ancestral, "dpmpp_2m_sde": S.sample_dpmpp_2m_sde}[name]
    kw = {} if name == "euler_ancestral" else {"lower_order_final": False}
    n_draws = 300_000 if name == "euler_ancestral" else 1_000_000
    errs = []
    for n in ns:
        x_T = mu + math.hypot(s, SMAX) * torch.randn(n_draws, 1, generator=torch.Generator().manual_seed(1), dtype=F64)
        y, _ = fn(den, x_T, ode.sigma_grid(n, SMIN, SMAX), generator=3, **kw)
        errs.append(abs(y.var().item() - (s**2 + SMIN**2)))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.35, (name, slope, errs)


# ================================================================== preconditioning
class Probe(torch.nn.Module):
    """F(u, c) for the preconditioning probe: which of u, c and 1 it returns."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, u, c):
        c = c.reshape(-1, *([1] * (u.ndim - 1))).expand_as(u)
        return {"zero": torch.zeros_like(u), "one": torch.ones_like(u), "u": u, "c": c, "u+c": u + c}[self.kind]


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_preconditioning_probe_exposes_every_scaling(sigma_data):
    """EDM's c_skip, c_out, c_in, c_noise, each read off a probe network: F = 0 gives c_skip x,
    F = 1 adds c_out, F = u gives (c_skip + c_out c_in) x, F = c adds c_out c_noise."""
    x = torch.tensor([[0.7], [-1.1], [2.0]], dtype=F64)
    sig = torch.tensor([0.01, 0.8, 30.0], dtype=F64)
    sd2 = sigma_data**2
    c_skip = sd2 / (sig**2 + sd2)
    c_out = sig * sigma_data / (sig**2 + sd2).sqrt()
    c_in = 1 / (sig**2 + sd2).sqrt()
    c_noise = sig.log() / 4
    out = {k: ode.ScoreNet(Probe(k), sigma_data=sigma_data).double().denoise(x, sig)[:, 0]
           for k in ("zero", "one", "u", "c", "u+c")}
    xs = x[:, 0]
    assert torch.allclose(out["zero"], c_skip * xs, rtol=1e-12, atol=0)
    assert torch.allclose(out["one"] - out["zero"], c_out, rtol=1e-12, atol=0)
    assert torch.allclose(out["u"], (c_skip + c_out * c_in) * xs, rtol=1e-12, atol=0)
    assert torch.allclose(out["c"] - out["zero"], c_out * c_noise, rtol=1e-12, atol=1e-15)
    assert torch.allclose(out["u+c"], (c_skip + c_out * c_in) * xs + c_out * c_noise, rtol=1e-12, atol=1e-15)
