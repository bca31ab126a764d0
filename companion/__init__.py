"""companion — the tested library of the executable book on generative models.

Core: :mod:`~companion.gmm` (the exact Gaussian-mixture laboratory), :mod:`~companion.schedules`,
:mod:`~companion.metrics`, :mod:`~companion.utils`; networks, training, data and plots in
:mod:`~companion.nets`, :mod:`~companion.train`, :mod:`~companion.data`, :mod:`~companion.plot`
(``from companion import nets, train, data, plot``). One module per chapter, imported here:
:mod:`~companion.ddpm` (ch. 1), :mod:`~companion.sde` (ch. 2), :mod:`~companion.ode` (ch. 3),
:mod:`~companion.unified` (ch. 4), :mod:`~companion.samplers`, :mod:`~companion.denoiser` and
:mod:`~companion.sample_quality` (ch. 5), :mod:`~companion.eae` (ch. 6), :mod:`~companion.gau` (ch. 7),
:mod:`~companion.positions` (ch. 8), :mod:`~companion.triples` (ch. 9).

Example::

    from companion import lab_2d, DiscreteSchedule, ddpm
    law, sched = lab_2d(), DiscreteSchedule.su(1000).subsequence(50)
    x_T = law.noised(sched.alpha_bar[-1].item(), sched.beta_bar[-1].item()).sample(2000, 0)
    x_0 = ddpm.sample(ddpm.exact_eps_model(law, DiscreteSchedule.su(1000)), sched, x_T, eta=0.0)
"""

from . import (
               ddpm,
               denoiser,
               eae,
               gau,
               gmm,
               metrics,
               ode,
               positions,
               sample_quality,
               samplers,
               schedules,
               sde,
               triples,
               unified,
               utils,
)
from .gmm import GaussianMixture, lab_1d, lab_2d
from .schedules import DiscreteSchedule, VESchedule, VPSchedule, su_vp
from .utils import show_source

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "lab_1d",
    "lab_2d",
    "DiscreteSchedule",
    "VPSchedule",
    "VESchedule",
    "su_vp",
    "show_source",
    "gmm",
    "metrics",
    "ddpm",
    "sde",
    "ode",
    "samplers",
    "denoiser",
    "sample_quality",
    "unified",
    "eae",
    "gau",
    "positions",
    "triples",
    "schedules",
    "utils",
    "__version__",
]
