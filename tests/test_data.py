"""Data: shapes, determinism, the laws' defining properties, digits scaling and split."""

import math

import pytest
import torch

from companion import data


@pytest.mark.parametrize("name", list(data.TOY_2D))
def test_toy_laws_are_deterministic_2d(name):
    f = data.TOY_2D[name]
    x = f(1000, 0)
    assert x.shape == (1000, 2) and x.dtype == torch.float64
    torch.testing.assert_close(x, f(1000, 0))
    assert x.abs().max() < 3


def test_checkerboard_points_lie_on_black_squares():
    x = data.checkerboard(5000, 1, cells=4)
    ij = torch.floor((x + 2) / 4 * 4).long()
    assert ((ij.sum(1) % 2) == 0).all()


def test_rings_radii():
    x = data.rings(20000, 2, radii=(0.5, 1.5), noise=0.0)
    r = x.norm(dim=1)
    assert torch.isclose(r, torch.tensor(0.5, dtype=torch.float64)).logical_or(
        torch.isclose(r, torch.tensor(1.5, dtype=torch.float64))).all()
    frac = (r < 1).double().mean().item()
    assert abs(frac - 0.5) < 4 * (0.25 / 20000) ** 0.5


def test_digits_scaling_and_split():
    xtr, ytr = data.digits("train")
    xte, yte = data.digits("test")
    assert xtr.shape[1:] == (1, 8, 8) and xtr.shape[0] + xte.shape[0] == 1797
    assert xtr.min() >= -1 and xtr.max() <= 1 and xtr.min() == -1 and xtr.max() == 1
    flat = {tuple(v.tolist()) for v in xtr.reshape(len(xtr), -1)}
    overlap = sum(tuple(v.tolist()) in flat for v in xte.reshape(len(xte), -1))
    assert overlap <= 5  # the digits set itself has a handful of exact duplicates
    assert set(ytr.tolist()) == set(range(10))


def test_data_validation():
    with pytest.raises(ValueError, match="n must be >= 1"):
        data.moons(0, 0)
    with pytest.raises(ValueError, match="split"):
        data.digits("val")
    with pytest.raises(ValueError, match="noise must be finite and >= 0"):
        data.moons(10, 0, noise=-1.0)


@pytest.mark.parametrize("law", sorted(data.TOY_2D))
def test_toy_laws_take_a_seed_a_generator_or_none(law):
    torch.manual_seed(0)  # None: torch's global generator
    a = data.TOY_2D[law](10, None)
    torch.manual_seed(0)
    assert torch.equal(a, data.TOY_2D[law](10, None))
    for bad in (1.5, True, "0"):
        with pytest.raises(TypeError, match="generator must be a torch.Generator or an int seed"):
            data.TOY_2D[law](10, bad)
    assert torch.equal(data.TOY_2D[law](10, 3), data.TOY_2D[law](10, 3))


def test_toy_laws_are_the_documented_shapes():
    """Noise-free draws lie exactly on the documented curves."""
    r = data.rings(4000, 0, noise=0.0)
    radius = r.norm(dim=1)
    assert torch.allclose(radius.sort().values[[0, -1]], torch.tensor([0.6, 1.4], dtype=torch.float64))
    assert ((radius - 0.6).abs() < 1e-12).logical_or((radius - 1.4).abs() < 1e-12).all()
    assert abs((radius < 1).double().mean().item() - 0.5) < 0.03  # equal mass per ring (SE 0.008)
    m = data.moons(4000, 1, noise=0.0)
    # upper moon: x = 1.2 (cos th - 0.5), y = 1.2 (sin th - 0.25); lower: x = 1.2 (0.5 - cos th), y = 1.2 (0.25 - sin th)
    up = (m[:, 0] / 1.2 + 0.5) ** 2 + (m[:, 1] / 1.2 + 0.25) ** 2
    down = (m[:, 0] / 1.2 - 0.5) ** 2 + (m[:, 1] / 1.2 - 0.25) ** 2
    assert (((up - 1).abs() < 1e-9) | ((down - 1).abs() < 1e-9)).all()
    c = data.checkerboard(4000, 2)
    assert c.min() >= -2 and c.max() <= 2 and c.min() < -1.9 and c.max() > 1.9
    ij = torch.floor((c + 2) / 4 * 4).long()
    assert ((ij.sum(1) % 2) == 0).all()
    s = data.spiral(4000, 3, noise=0.0)
    rad = s.norm(dim=1)  # r = 0.2 + 1.3 s with angle 4 pi s: r is in [0.2, 1.5]
    assert rad.min() >= 0.2 - 1e-12 and rad.max() <= 1.5 + 1e-12 and rad.max() > 1.49
    th = torch.atan2(s[:, 1], s[:, 0])
    frac = (rad - 0.2) / 1.3
    assert (torch.cos(4 * math.pi * frac) - torch.cos(th)).abs().max() < 1e-9
    with pytest.raises(ValueError, match="radii"):
        data.rings(10, 0, radii=(0.0, 1.0))
