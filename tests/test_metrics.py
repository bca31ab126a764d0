"""Every metric against a case with a known answer."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import stats

from companion import metrics
from companion.core.gmm import lab_1d


def test_w1_to_cdf_point_mass_closed_form():
    """All samples at a: W1(delta_a, N(0,1)) = E|X - a| = 2 phi(a) + a (2 Phi(a) - 1)."""
    ncdf = lambda u: torch.special.ndtr(u)
    for a in (0.0, 0.7, -2.3):
        exact = 2 * stats.norm.pdf(a) + a * (2 * stats.norm.cdf(a) - 1)
        got = metrics.w1_to_cdf(torch.full((10,), a, dtype=torch.float64), ncdf, lo=-12, hi=12)
        assert abs(got - exact) < 1e-6


def test_w1_to_cdf_default_range_charges_a_collapsed_sample():
    """All samples at 0 (sd 0): W1 to N(0,1) is E|X| = sqrt(2/pi) with the default range too."""
    got = metrics.w1_to_cdf(torch.zeros(100, dtype=torch.float64), lambda u: torch.special.ndtr(u))
    assert abs(got - math.sqrt(2 / math.pi)) < 1e-6
    far = metrics.w1_to_cdf(torch.full((100,), 50.0, dtype=torch.float64), lambda u: torch.special.ndtr(u))
    assert abs(far - 50.0) < 1e-4


def test_w1_to_cdf_exact_sample_sits_at_the_floor_and_shift_is_detected():
    m = lab_1d()
    n = 20_000
    floors = [metrics.w1_to_cdf(m.sample(n, s), m.cdf) for s in range(5)]
    # Measured over 100 seeds at n = 2e4: mean 0.0118, sd 0.0059, 99th percentile 0.029. The floor
    # is set by the binomial noise of the mixture weight (SE 0.0032) times the 3.5 gap between modes.
    # The mean of 5 seeds has sd 0.0027, so 0.02 is three of its sd above the floor's mean.
    assert sum(floors) / 5 < 0.02
    shifted = metrics.w1_to_cdf(m.sample(n, 0) + 0.1, m.cdf)
    assert 0.085 < shifted < 0.125  # a translation by c moves W1 by about |c|; 30 seeds: 0.093-0.119


def test_w1_1d_matches_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=g, dtype=torch.float64)
    y = 0.5 + 2 * torch.rand(170, generator=g, dtype=torch.float64)
    assert abs(metrics.w1_1d(x, y) - stats.wasserstein_distance(x.numpy(), y.numpy())) < 1e-12
    assert abs(metrics.w1_1d(x, x.flip(0) + 0.3) - 0.3) < 1e-12


def test_sliced_wasserstein_of_a_translation():
    """Shifting a sample by c e_1 moves every projection by c u_1: SW = |c| E|u_1| = 2|c|/pi in 2-D."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    c, P = 0.8, 4000
    got = metrics.sliced_wasserstein(x, x + torch.tensor([c, 0.0], dtype=torch.float64), P, generator=2)
    se = c * math.sqrt(0.5 - 4 / math.pi**2) / math.sqrt(P)
    assert abs(got - 2 * c / math.pi) < 4 * se


def test_mmd_rbf_matches_gaussian_closed_form():
    """For N(m1, I) vs N(m2, I) and kernel width h: E k = (h^2/(h^2+2))^{d/2} exp(-|dm|^2 / (2 (h^2+2)))."""
    d, h, n = 2, 1.5, 3000
    dm = torch.tensor([0.6, 0.0], dtype=torch.float64)
    c0 = (h**2 / (h**2 + 2)) ** (d / 2)
    exact = 2 * c0 - 2 * c0 * math.exp(-(dm**2).sum().item() / (2 * (h**2 + 2)))
    ests = []
    for s in range(3):
        g = torch.Generator().manual_seed(s)
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randn(n, d, generator=g, dtype=torch.float64) + dm
        ests.append(metrics.mmd_rbf(x, y, bandwidth=h))
    # measured over seeds 0-9 at n = 3000: exact 0.0439, single-estimate sd 0.0025; the mean of
    # 3 has SE 0.0015, and 0.006 is 4 of those SE
    assert abs(np.mean(ests) - exact) < 0.006
    same = metrics.mmd_rbf(torch.randn(n, d, generator=g, dtype=torch.float64),
                           torch.randn(n, d, generator=g, dtype=torch.float64), bandwidth=h)
    assert abs(same) < 0.0015  # equal laws, seeds 0-9: sd 0.00028, max |MMD^2| 0.00055


def test_total_variation_and_empirical_pmf():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert metrics.total_variation(p, q) == pytest.approx(0.5)
    labels = torch.tensor([0, 0, 1, 2])
    torch.testing.assert_close(metrics.empirical_pmf(labels, 4), torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="p must be a pmf"):
        metrics.total_variation(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.total_variation(torch.tensor([1.0]), torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="integer"):
        metrics.empirical_pmf(torch.tensor([0.5]), 2)
    with pytest.raises(ValueError, match="lie in"):
        metrics.empirical_pmf(torch.tensor([3]), 2)


def test_gaussian_frechet_against_scipy_sqrtm():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    B = torch.randn(4, 4, generator=g, dtype=torch.float64)
    c1, c2 = A @ A.T + 0.1 * torch.eye(4), B @ B.T + 0.1 * torch.eye(4)
    m1, m2 = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    cross = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    ref = ((m1 - m2) ** 2).sum().item() + np.trace(c1.numpy() + c2.numpy() - 2 * cross)
    assert abs(metrics.gaussian_frechet(m1, c1, m2, c2) - ref) < 1e-8
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    one = metrics.gaussian_frechet(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([0.0]), torch.tensor([[1.0]]))
    assert one == pytest.approx(1.0 + 1.0)


def test_frechet_distance_of_samples_equals_gaussian_formula_on_their_moments():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    y = 2 * torch.randn(300, 3, generator=g, dtype=torch.float64) + 1
    ref = metrics.gaussian_frechet(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))
    assert metrics.frechet_distance(x, y) == pytest.approx(ref, abs=1e-12)


def test_digit_classifier_is_accurate_and_fid_separates_noise_from_digits():
    from companion.core.data import digits

    _, acc = metrics.digit_classifier()
    assert acc > 0.9
    train = digits("train")[0][:449]
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(449, 1, 8, 8, generator=g) * 2 - 1
    fd_train = metrics.digit_frechet_distance(train)
    fd_noise = metrics.digit_frechet_distance(noise)
    assert fd_train < 0.1 * fd_noise
    # samples are clipped to the data range [-1, 1] before the features
    loud = noise * 3
    assert metrics.digit_frechet_distance(loud) == metrics.digit_frechet_distance(loud.clamp(-1, 1))
    model, _ = metrics.digit_classifier()
    with torch.no_grad():
        raw = metrics.frechet_distance(model.features(loud), model.features(digits("test")[0].float()))
    assert abs(raw - metrics.digit_frechet_distance(loud)) > 1.0  # without the clip the features differ


def test_loglog_slope():
    h = torch.tensor([0.1, 0.05, 0.025, 0.0125])
    assert metrics.loglog_slope(h, 3 * h**2) == pytest.approx(2.0, abs=1e-10)
    with pytest.raises(ValueError, match="positive"):
        metrics.loglog_slope([1.0, 2.0], [0.0, 1.0])


def test_metric_validation():
    with pytest.raises(ValueError, match=r"samples must be 1-D samples of shape \(n,\) or \(n, 1\)"):
        metrics.w1_to_cdf(torch.zeros(5, 2), lambda u: u)
    with pytest.raises(ValueError, match="same dimension"):
        metrics.sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="bandwidth must be finite and > 0"):
        metrics.mmd_rbf(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        metrics.frechet_distance(np.zeros((3, 2)), torch.zeros(3, 2))


def test_digit_classifier_trains_even_under_no_grad():
    with torch.no_grad():
        model, acc = metrics.digit_classifier(seed=1, steps=3)
    assert 0.0 <= acc <= 1.0 and model.head.weight.requires_grad


def test_metrics_refuse_bad_input_instead_of_nan():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="positive semi-definite"):
        metrics.gaussian_frechet(torch.zeros(2), -eye, torch.zeros(2), eye)
    with pytest.raises(ValueError, match="NaN"):
        metrics.gaussian_frechet(torch.tensor([float("nan"), 0.0]), eye, torch.zeros(2), eye)
    with pytest.raises(ValueError, match="distinct"):
        metrics.loglog_slope([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        metrics.loglog_slope([1, 2, float("inf")], [1, 2, 3])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        metrics.mmd_rbf(x, x, chunk=-1)
    with pytest.raises(ValueError, match="cdf must return finite"):
        metrics.w1_to_cdf(x[:, 0], lambda t: torch.full_like(t, float("nan")), lo=-5, hi=5)
    with pytest.raises(TypeError, match="generator"):
        metrics.sliced_wasserstein(x, x, generator=1.5)


def test_mmd_small_n_exact_value():
    # n = m = 2, bandwidth 1: the unbiased estimator by hand (off-diagonal pairs only, n(n-1) = 2)
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [3.0]], dtype=torch.float64)
    k = lambda d: math.exp(-d * d / 2)
    kxx = 2 * k(1.0) / 2
    kyy = 2 * k(3.0) / 2
    kxy = (k(0.0) + k(3.0) + k(1.0) + k(2.0)) / 4
    assert metrics.mmd_rbf(x, y, bandwidth=1.0) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)


def test_digit_classifier_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    metrics.digit_classifier(0, steps=5)
    assert torch.equal(torch.rand(3), expected)


def test_w1_to_cdf_widens_its_range_to_a_far_law():
    """A sample around 0 against N(-20, 1) and N(+20, 1): the default range must grow on the
    side where the law lives (W1 = 20 up to the sample's mean error, SE 0.022 for n = 2000)."""
    x = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for shift in (-20.0, 20.0):
        cdf = lambda z, s=shift: torch.special.ndtr(z - s)
        w = metrics.w1_to_cdf(x, cdf)
        assert abs(w - (abs(shift) - math.copysign(1, shift) * x.mean().item())) < 0.01, (shift, w)


def test_mmd_default_bandwidth_is_the_median_distance_of_the_first_1000_pooled_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(700, 2, generator=g, dtype=torch.float64)
    y = torch.randn(600, 2, generator=g, dtype=torch.float64) + 0.3
    h = torch.pdist(torch.cat([x[:500], y[:500]])).median().item()
    assert metrics.mmd_rbf(x, y) == metrics.mmd_rbf(x, y, bandwidth=h)
    assert metrics.mmd_rbf(x, y) != metrics.mmd_rbf(x, y, bandwidth=torch.pdist(torch.cat([x[:501], y[:501]])).median().item())


# ---------------------------------------------------------------- inception score
def test_inception_score_of_one_hot_predictions_over_k_equally_used_classes_is_k():
    for k, reps in ((2, 1), (5, 3), (10, 7)):
        probs = torch.eye(k, dtype=torch.float64).repeat(reps, 1)
        assert metrics.inception_score(probs) == pytest.approx(k, rel=1e-12)


def test_inception_score_of_identical_predictions_is_one():
    row = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    assert metrics.inception_score(row.repeat(50, 1)) == pytest.approx(1.0, abs=1e-12)
    assert metrics.inception_score(torch.eye(3)[:1]) == pytest.approx(1.0, abs=1e-12)   # one sample


def test_inception_score_closed_forms():
    # one-hot with unequal class use: IS = exp(H(marginal)) (every conditional entropy is 0)
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    probs = torch.nn.functional.one_hot(labels, 4).double()
    w = torch.tensor([3, 1, 2], dtype=torch.float64) / 6
    assert metrics.inception_score(probs) == pytest.approx(math.exp(-(w * w.log()).sum().item()), rel=1e-12)
    # two symmetric soft predictions (q, 1 - q) and (1 - q, q): marginal uniform, IS = exp(log 2 - h(q))
    q = 0.8
    probs = torch.tensor([[q, 1 - q], [1 - q, q]], dtype=torch.float64)
    h = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert metrics.inception_score(probs) == pytest.approx(math.exp(math.log(2) - h), rel=1e-12)


def test_inception_score_bounds_permutation_invariance_and_float32():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(200, 6, generator=g, dtype=torch.float64), dim=1)
    s = metrics.inception_score(probs)
    assert 1.0 < s < 6.0
    assert metrics.inception_score(probs[:, torch.randperm(6, generator=g)]) == pytest.approx(s, rel=1e-12)
    assert metrics.inception_score(probs[torch.randperm(200, generator=g)]) == pytest.approx(s, rel=1e-12)
    assert metrics.inception_score(probs.float()) == pytest.approx(s, rel=1e-5)


def test_inception_score_rejects_bad_inputs():
    with pytest.raises(TypeError):
        metrics.inception_score([[0.5, 0.5]])
    with pytest.raises(TypeError):
        metrics.inception_score(torch.tensor([[1, 0]]))
    with pytest.raises(ValueError, match="dims"):
        metrics.inception_score(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="k >= 2"):
        metrics.inception_score(torch.ones(3, 1))
    with pytest.raises(ValueError, match="k >= 2"):
        metrics.inception_score(torch.ones(0, 3))
    with pytest.raises(ValueError, match="pmf"):
        metrics.inception_score(torch.tensor([[0.5, 0.6]]))
    with pytest.raises(ValueError, match="pmf"):
        metrics.inception_score(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.inception_score(torch.tensor([[float("nan"), 1.0]]))


def test_digit_inception_score_of_the_test_digits_is_near_ten_and_of_one_digit_near_one():
    from companion import data

    x, y = data.digits("test")
    full = metrics.digit_inception_score(x)
    one = metrics.digit_inception_score(x[:1].repeat(100, 1, 1, 1))
    assert 8.0 < full <= 10.0          # ten balanced classes, a confident and mostly right classifier
    assert one == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError):
        metrics.digit_inception_score(x[:, 0])
