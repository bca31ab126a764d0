"""The statistics protocol for learned generators, against what must hold by construction."""

import pytest
import torch

from companion import metrics
from companion import sample_quality as Q
from companion.core.data import digits


@pytest.fixture(scope="module")
def data():
    xtr, xte = digits("train")[0], digits("test")[0]
    return xtr, xte, Q.digit_features(xte)


def test_batched_fd_is_the_frechet_distance(data):
    """The bootstrap's batched FD (eigenvalues of C_a C_r) against metrics.frechet_distance
    (matrix square roots by eigh), on real features."""
    xtr, xte, fr = data
    fa = Q.digit_features(xtr[:300])
    mu_a, c_a = Q._moments(fa)
    mu_r, c_r = Q._moments(fr)
    got = Q._fd_batch(mu_a[None], c_a[None], mu_r[None], c_r[None]).item()
    assert abs(got - metrics.frechet_distance(fa, fr)) < 1e-8 * max(1.0, got)
    assert abs(Q.fd_features(fa, fr) - metrics.digit_frechet_distance(xtr[:300])) < 1e-8 * max(1.0, got)


def test_floor_of_the_whole_training_set(data):
    xtr, _, _ = data
    fl = Q.floor(xtr.shape[0])
    assert abs(fl["fd"] - metrics.digit_frechet_distance(xtr)) < 1e-8
    with pytest.raises(ValueError):
        Q.floor(xtr.shape[0] + 1)


def test_memorisation_fraction_by_construction(data):
    xtr, xte, _ = data
    held = Q.memorisation_fraction(xte, xtr, xte)
    assert held["fraction"] == held["test_fraction"]
    n = xte.shape[0]   # strictly below the interpolated 5th percentile: between 0.05 - 1/n and 0.05 + 2/n
    assert 0.05 - 1 / n <= held["fraction"] <= 0.05 + 2 / n
    copies = Q.memorisation_fraction(xtr[:200], xtr, xte)
    assert copies["fraction"] == 1.0                  # training digits are at distance 0
    assert all(d == 0.0 and i == j for i, j, d in copies["closest"])
    noise = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert Q.memorisation_fraction(noise, xtr, xte)["fraction"] == 0.0
    half = torch.cat([xtr[:100], noise[:100]])        # half copies, half noise
    assert Q.memorisation_fraction(half, xtr, xte)["fraction"] == 0.5


def test_paired_bootstrap_verdicts(data):
    xtr, _, fr = data
    fa = Q.digit_features(xtr[:600])
    same = Q.paired_bootstrap_fd(fa, fa, fr, n_boot=100)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0 and same["verdict"] == "="
    noisy = xtr[:600] + 0.3 * torch.randn(600, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fb = Q.digit_features(noisy)
    res = Q.paired_bootstrap_fd(fa, fb, fr, n_boot=200)
    assert res["verdict"] == "A" and res["hi"] < 0 and res["lo"] <= res["diff"] <= res["hi"]
    flipped = Q.paired_bootstrap_fd(fb, fa, fr, n_boot=200)
    assert flipped["verdict"] == "B"
    # two independent halves of the same law: indistinguishable
    fc, fd = Q.digit_features(xtr[:500]), Q.digit_features(xtr[500:1000])
    assert Q.paired_bootstrap_fd(fc, fd, fr, n_boot=200)["verdict"] == "="
    with pytest.raises(ValueError, match="paired"):
        Q.paired_bootstrap_fd(fa, fa[:10], fr)


def test_pooled_report_needs_three_seeds(data):
    xtr, xte, _ = data
    parts = [xtr[:449], xtr[449:898], xtr[898:1347]]
    rep = Q.pooled_report(parts)
    assert rep["n"] == 1347 and len(rep["fd_per_seed"]) == 3
    assert abs(rep["ratio"] - rep["fd"] / rep["floor"]) < 1e-12
    assert rep["memorisation"] == 1.0          # training digits themselves
    with pytest.raises(ValueError, match="at least 3"):
        Q.pooled_report(parts[:2])
