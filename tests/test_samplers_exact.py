"""Exact checks of companion.diffusion.samplers that mutation testing showed were missing: the callbacks'
noise levels, the multistep weights against closed-form integrals, and the scale equivariance
of the adaptive solver's relative error control."""

from __future__ import annotations

import math

import pytest
import torch

from companion import GaussianMixture, lab_2d, ode
from companion import samplers as S

F64 = torch.float64
SMIN, SMAX = 2e-3, 80.0


@pytest.mark.parametrize("name", ["multistep", "dpmpp_2m", "dpmpp_3m", "unipc", "lms"])
def test_callbacks_report_consecutive_noise_levels(name):
    """Every step's callback reports sigma = grid[i] and sigma_next = grid[i + 1], once per step."""
    gm = lab_2d()
    den = S.gmm_denoiser(gm)
    grid = ode.sigma_grid(7, SMIN, SMAX)
    x = SMAX * torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    seen = []
    fn = {"multistep": S.sample_multistep, "dpmpp_2m": S.sample_dpmpp_2m, "dpmpp_3m": S.sample_dpmpp_3m,
          "unipc": S.sample_unipc, "lms": S.sample_lms}[name]
    fn(den, x, grid, callback=seen.append)
    assert [d["i"] for d in seen] == list(range(7))
    assert [d["sigma"] for d in seen] == grid[:-1].tolist()
    assert [d["sigma_next"] for d in seen] == grid[1:].tolist()


def _int_exp_linear(a: float, b: float) -> tuple[float, float]:
    """Closed forms of int_a^b e^t L(t) dt for the two linear Lagrange polynomials on {b, a}."""
    h = b - a
    at_b = (math.exp(b) * (h - 1) + math.exp(a)) / h      # L = (t - a) / h, the node b
    at_a = (math.exp(b) - math.exp(a) * (h + 1)) / h      # L = (b - t) / h, the node a
    return at_b, at_a


@pytest.mark.parametrize("order", [1, 2, 3])
def test_multistep_plan_weights_in_closed_form(order):
    """Predictor step 0 has one node: weight e^b - e^a. The corrector of step i uses the new point
    plus min(order, i + 1) past nodes; at step 0 that is the exponential trapezoid on {ell_1, ell_0}.
    Every predictor's weights integrate e^t exactly (they sum to e^b - e^a)."""
    ell = [-4.0, -3.1, -2.5, -1.2, 0.3, 1.0]
    pred, corr = S._multistep_plan(ell, order, True, False)
    assert abs(pred[0][0] - (math.exp(ell[1]) - math.exp(ell[0]))) < 1e-12
    for i in range(len(ell) - 1):
        assert len(pred[i]) == min(order, i + 1)
        assert abs(sum(pred[i]) - (math.exp(ell[i + 1]) - math.exp(ell[i]))) < 1e-12
    for i in range(len(ell) - 2):
        assert len(corr[i]) == min(order, i + 1) + 1
        assert abs(sum(corr[i]) - (math.exp(ell[i + 1]) - math.exp(ell[i]))) < 1e-12
    at_b, at_a = _int_exp_linear(ell[0], ell[1])
    assert abs(corr[0][0] - at_b) < 1e-12 and abs(corr[0][1] - at_a) < 1e-12


@pytest.mark.parametrize("method", ["singlestep", "multistep"])
def test_adaptive_relative_error_control_is_scale_equivariant(method):
    """With atol negligible the error control is relative, so scaling the law, the start and the
    noise range by c scales the output by c and takes the very same steps."""
    gm, c = lab_2d(), 8.0
    gm_c = GaussianMixture(gm.weights, c * gm.means, c**2 * gm.covs)
    x = SMAX * torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    y1, i1 = S.sample_dpm_adaptive(S.gmm_denoiser(gm), x, SMAX, SMIN, rtol=0.02, atol=1e-300, method=method)
    yc, ic = S.sample_dpm_adaptive(S.gmm_denoiser(gm_c), c * x, c * SMAX, c * SMIN, rtol=0.02, atol=1e-300,
                                   method=method)
    assert (i1["steps"], i1["rejected"], i1["nfe"]) == (ic["steps"], ic["rejected"], ic["nfe"])
    assert (yc - c * y1).abs().max() < 1e-9 * c * y1.abs().max()


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 3.0])
def test_ancestral_step_in_closed_form(eta):
    """sigma_up = min(s', eta s' sqrt(1 - s'^2/s^2)), sigma_down^2 + sigma_up^2 = s'^2 (k-diffusion's
    get_ancestral_step); at eta = 1 sigma_up^2 is the DDPM posterior variance in sigma units."""
    for s, s_next in [(80.0, 40.0), (1.0, 0.3), (0.5, 0.499)]:
        down, up = S._ancestral_step(s, s_next, eta)
        expect_up = min(s_next, eta * s_next * math.sqrt(1 - s_next**2 / s**2))
        assert abs(up - expect_up) < 1e-12 * s
        assert abs(down**2 + up**2 - s_next**2) < 1e-12 * s**2


def test_heun_churn_adds_the_documented_noise():
    """The first callback sees x after the churn: x + s_noise sqrt(s_hat^2 - s^2) xi with
    s_hat = s (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1), xi the generator's first normals."""
    gm = lab_2d()
    grid = ode.sigma_grid(5, SMIN, SMAX)
    x = torch.zeros(1000, 2, dtype=F64)
    seen = []
    S.sample_heun_churn(S.gmm_denoiser(gm), x, grid, generator=7, s_churn=1.0, s_noise=0.9, callback=seen.append)
    s = grid[0].item()
    s_hat = s * (1 + min(1.0 / 5, math.sqrt(2) - 1))
    xi = torch.randn(1000, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    assert abs(seen[0]["sigma"] - s_hat) < 1e-12 * s
    torch.testing.assert_close(seen[0]["x"], 0.9 * math.sqrt(s_hat**2 - s**2) * xi, rtol=1e-12, atol=0)


def test_fast_samplers_declare_their_observed_order():
    """The order each FAST_SAMPLERS entry declares is the log-log slope of its pathwise error
    against a tight reference (N = 256 -> 512 steps on the 2-D laboratory), within 0.25."""
    gm = lab_2d()
    den = S.gmm_denoiser(gm)
    x = gm.noised(1, SMAX).sample(40, 0)
    ref, _ = S.reference_solution(den, x, SMAX, SMIN)
    for name, (fn, order) in S.FAST_SAMPLERS.items():
        errs = [S.pathwise_error(fn(den, x, ode.sigma_grid(N, SMIN, SMAX))[0], ref) for N in (256, 512)]
        slope = math.log2(errs[0] / errs[1])
        assert abs(slope - order) < 0.25, (name, slope, errs)
