"""Tests of the figure helpers (drawn off-screen)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion import plot  # noqa: E402
from companion.core.gmm import lab_2d  # noqa: E402


def test_score_field_draws_contours_and_capped_arrows():
    fig, ax = plt.subplots()
    law = lab_2d().noised(0.8, 0.6)
    plot.score_field(ax, law, lim=3.0, arrows=9, grid=40)
    quiv = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
    assert len(quiv) == 1 and quiv[0].N == 81                    # one arrow per lattice point
    u, v = torch.as_tensor(quiv[0].U), torch.as_tensor(quiv[0].V)
    assert (torch.sqrt(u**2 + v**2) <= 1 + 1e-12).all()          # lengths capped
    # arrows point along the exact score
    u_grid = torch.linspace(-3.0, 3.0, 9, dtype=torch.float64)
    X, Y = torch.meshgrid(u_grid, u_grid, indexing="xy")
    s = law.score(torch.stack([X.reshape(-1), Y.reshape(-1)], 1))
    cos = (s[:, 0] * u + s[:, 1] * v) / (s.norm(dim=1) * torch.sqrt(u**2 + v**2))
    assert (cos > 1 - 1e-9).all()
    assert len(ax.collections) > 1                               # contour lines are there too
    assert ax.get_xlim() == (-3.0, 3.0) and ax.get_ylim() == (-3.0, 3.0)
    plt.close(fig)


@pytest.mark.parametrize("kwargs", [{"lim": 0.0}, {"arrows": 1}, {"grid": 1}])
def test_score_field_rejects_bad_arguments(kwargs):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError):
        plot.score_field(ax, lab_2d(), **kwargs)
    plt.close(fig)
