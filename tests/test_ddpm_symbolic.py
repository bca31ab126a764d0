"""Chapter 1, check A1: the DDPM posterior and the DDIM constraints derived symbolically with
sympy (exact zero residuals), then compared with the coefficients the companion computes."""

import pytest
import sympy as sp
import torch

from companion import ddpm
from companion.core.schedules import DiscreteSchedule

# per-step alpha_t in (0, 1) and the previous noise std bb_prev = beta_bar_{t-1} in (0, 1);
# everything else follows from alpha^2 + beta^2 = 1 and the telescoping identity
a, bp = sp.symbols("alpha_t betabar_prev", positive=True)
ab_prev = sp.sqrt(1 - bp**2)  # alpha_bar_{t-1}
b2 = 1 - a**2  # beta_t^2
ab = a * ab_prev  # alpha_bar_t
bb2 = 1 - ab**2  # beta_bar_t^2
x0, xt, y = sp.symbols("x0 x_t x_prev", real=True)


def test_telescoping_identity():
    """alpha_t^2 beta_bar_{t-1}^2 + beta_t^2 = beta_bar_t^2 (eq. ddpm-marginal)."""
    assert sp.simplify(a**2 * bp**2 + b2 - bb2) == 0


def test_a1_posterior_by_completing_the_square():
    """-2 log of p(x_t|x_{t-1}) p(x_{t-1}|x_0) / p(x_t|x_0), as a quadratic in x_{t-1},
    equals (x_{t-1} - mu)^2 / var exactly (zero remainder), eq. ddpm-posterior."""
    expo = (xt - a * y) ** 2 / b2 + (y - ab_prev * x0) ** 2 / bp**2 - (xt - ab * x0) ** 2 / bb2
    quad = sp.Poly(sp.expand(expo), y)
    A, B, C = (quad.coeff_monomial(y**2), quad.coeff_monomial(y), quad.coeff_monomial(1))
    var = sp.simplify(1 / A)
    mu = sp.simplify(-B / (2 * A))
    assert sp.simplify(var - bp**2 * b2 / bb2) == 0
    mu_book = a * bp**2 / bb2 * xt + ab_prev * b2 / bb2 * x0
    assert sp.simplify(mu - mu_book) == 0
    # the constant left after completing the square vanishes: the three normalisers match
    assert sp.simplify(C - A * mu**2) == 0
    # and so do the Gaussian normalising constants: var * bb^2 = beta^2 * bb_prev^2
    assert sp.simplify(var * bb2 - b2 * bp**2) == 0


def test_a1_eps_form_of_the_mean():
    """Substituting x0 = (x_t - beta_bar_t eps)/alpha_bar_t gives (x_t - beta_t^2/beta_bar_t eps)/alpha_t
    (eq. ddpm-step); the key identity is a bb_prev^2/bb^2 + ab_prev b^2/(ab bb^2) = 1/a."""
    eps = sp.symbols("epsilon", real=True)
    bb = sp.sqrt(bb2)
    mu_book = a * bp**2 / bb2 * xt + ab_prev * b2 / bb2 * ((xt - bb * eps) / ab)
    assert sp.simplify(mu_book - (xt - b2 / bb * eps) / a) == 0
    assert sp.simplify(a * bp**2 / bb2 + ab_prev * b2 / (ab * bb2) - 1 / a) == 0


def test_a1_ddim_constraints_and_ddpm_special_case():
    """N(kappa x_t + lam x0, sigma^2) integrated against p(x_t|x0) must give p(x_{t-1}|x0):
    mean  kappa ab + lam = ab_prev, variance kappa^2 bb^2 + sigma^2 = bb_prev^2 (eq. ddim-constraints)."""
    s = sp.symbols("sigma", nonnegative=True)
    bb = sp.sqrt(bb2)
    kappa = sp.sqrt(bp**2 - s**2) / bb
    lam = ab_prev - ab * kappa
    assert sp.simplify(kappa * ab + lam - ab_prev) == 0
    assert sp.simplify(kappa**2 * bb2 + s**2 - bp**2) == 0
    # at sigma = DDPM's posterior std the kernel is the Bayes posterior
    s_ddpm = bp * sp.sqrt(b2) / bb
    k_book = a * bp**2 / bb2
    # both sides are >= 0, so comparing squares proves equality (sympy cannot take the root
    # of 1/bb^2 without knowing bb^2 > 0)
    assert sp.simplify(kappa.subs(s, s_ddpm) ** 2 - k_book**2) == 0
    assert sp.simplify((ab_prev - ab * k_book) - ab_prev * b2 / bb2) == 0
    # the x0-weight gamma of eq. ddpm-reverse-var is lam
    assert sp.simplify(lam - (ab_prev - ab * sp.sqrt(bp**2 - s**2) / bb)) == 0


@pytest.mark.parametrize("t", [1, 7, 400])
def test_companion_coefficients_match_the_symbolic_ones(t):
    """Numerical values of the companion's kappa, lam, variance and gamma against the sympy
    expressions evaluated at the schedule's alpha_t and beta_bar_{t-1} (float64 rounding)."""
    sched = DiscreteSchedule.su(1000).subsequence(500)
    vals = {a: sched.alpha[t].item(), bp: sched.beta_bar[t - 1].item()}
    zero = torch.zeros(1, 1, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    kappa_num = ddpm.posterior(sched, t, one, zero)[0].item()
    lam_num = ddpm.posterior(sched, t, zero, one)[0].item()
    var_num = ddpm.posterior(sched, t, zero, zero)[1].item()
    assert abs(kappa_num - float((a * bp**2 / bb2).subs(vals))) < 1e-13
    assert abs(lam_num - float((ab_prev * b2 / bb2).subs(vals))) < 1e-13
    assert abs(var_num - float((bp**2 * b2 / bb2).subs(vals))) < 1e-13
    s = 0.3 * sched.beta_bar[t - 1].item()
    gamma_sym = (ab_prev - ab * sp.sqrt(bp**2 - s**2) / sp.sqrt(bb2)).subs(vals)
    assert abs(ddpm.reverse_gamma(sched, t, s) - float(gamma_sym)) < 1e-13
