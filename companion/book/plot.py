"""Figure helpers with one consistent style (used by every chapter notebook)."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler

__all__ = ["set_style", "density_1d", "scatter_2d", "score_field", "loglog_convergence", "image_grid", "COLORS"]

#: The book's palette (colour-blind safe, readable on light and dark backgrounds).
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def set_style() -> None:
    """Set the book's matplotlib style: readable fonts (nothing below 9 pt), light grid, the
    palette, and, in a notebook, 2× PNGs ("retina") so figures stay sharp when zoomed or printed."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=COLORS),
        "font.size": 10,
        "legend.frameon": False,
        "legend.fontsize": 9,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "axes.titlesize": 10,
        "figure.facecolor": "white",
        "axes.facecolor": "white",
    })
    try:  # inline figures at twice the pixel density, shown at the same size
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("retina")
    except ImportError:  # plain Python: nothing to configure
        pass


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def density_1d(ax, samples, pdf=None, *, bins: int = 120, label: str = "samples", lo=None, hi=None):
    """Histogram of 1-D ``samples`` with an exact density ``pdf(grid) -> values`` on top."""
    s = _np(samples).reshape(-1)
    lo = s.min() if lo is None else lo
    hi = s.max() if hi is None else hi
    ax.hist(s, bins=bins, range=(lo, hi), density=True, alpha=0.5, label=label)
    if pdf is not None:
        grid = torch.linspace(float(lo), float(hi), 800, dtype=torch.float64)
        ax.plot(grid.numpy(), _np(pdf(grid)), color="k", lw=1.2, label="exact density")
    ax.legend()
    return ax


def scatter_2d(ax, x, *, s: float = 2.0, alpha: float = 0.4, label: str | None = None, lim: float | None = 3.5):
    """Scatter a 2-D sample ``(n, 2)`` with equal axes."""
    x = _np(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, label=label, linewidths=0)
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    return ax


def score_field(ax, law, *, lim: float = 3.5, arrows: int = 15, grid: int = 150, levels: int = 7,
                arrow_color: str = "k"):
    r"""Draw a 2-D law's density as contour lines and its score :math:`\nabla\log p` as arrows.

    ``law`` is anything with ``log_prob(x) -> (n,)`` and ``score(x) -> (n, 2)`` for ``x`` of shape
    ``(n, 2)`` (a :class:`~companion.core.gmm.GaussianMixture`, e.g. a noised one). The density is evaluated
    on a ``grid`` × ``grid`` lattice of ``[-lim, lim]^2``, the score on an ``arrows`` × ``arrows`` one.
    Arrows show the score's direction; their length grows with its norm but is capped, so that
    the large scores near a narrow mode do not hide the rest of the field. Returns ``ax``.
    """
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim}")
    if int(arrows) < 2 or int(grid) < 2:
        raise ValueError(f"arrows and grid must be at least 2, got {arrows} and {grid}")
    def lattice(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = torch.linspace(-lim, lim, int(n), dtype=torch.float64)
        X, Y = torch.meshgrid(u, u, indexing="xy")
        return X, Y, torch.stack([X.reshape(-1), Y.reshape(-1)], 1)

    X, Y, pts = lattice(grid)
    dens = law.log_prob(pts).exp().reshape(X.shape)
    ax.contour(_np(X), _np(Y), _np(dens), levels=levels, colors=COLORS[0], linewidths=0.8, alpha=0.8)
    X, Y, pts = lattice(arrows)
    s = law.score(pts)
    norm = s.norm(dim=1, keepdim=True).clamp_min(1e-12)
    length = norm.clamp(max=4.0) / 4.0                     # in [0, 1]: direction, capped magnitude
    u = (s / norm * length).reshape(int(arrows), int(arrows), 2)
    step = 2 * lim / (int(arrows) - 1)
    ax.quiver(_np(X), _np(Y), _np(u[..., 0]), _np(u[..., 1]), color=arrow_color, angles="xy",
              scale_units="xy", scale=1 / (0.9 * step), width=0.004, alpha=0.7)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    return ax


def loglog_convergence(ax, h, err, *, label: str, ref_slope: float | None = None, marker: str = "o"):
    """Plot an error against a step size on log-log axes, with a dashed reference slope."""
    h, err = _np(h).astype(float), _np(err).astype(float)
    ax.loglog(h, err, marker=marker, label=label)
    if ref_slope is not None:
        ref = err[-1] * (h / h[-1]) ** ref_slope
        ax.loglog(h, ref, "k--", lw=0.8, label=f"slope {ref_slope:g}")
    ax.legend()
    return ax


def image_grid(images, nrow: int = 8, ax=None, title: str | None = None):
    """Show a batch of images ``(n, 1, H, W)`` in [-1, 1] as one grey-scale grid."""
    imgs = _np(images)
    n, _, H, W = imgs.shape
    ncol = int(np.ceil(n / nrow))
    canvas = np.ones((ncol * (H + 1) + 1, nrow * (W + 1) + 1))
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[1 + r * (H + 1): 1 + r * (H + 1) + H, 1 + c * (W + 1): 1 + c * (W + 1) + W] = imgs[i, 0]
    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.45, ncol * 0.45))
    ax.imshow(canvas, cmap="gray_r", vmin=-1, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax
