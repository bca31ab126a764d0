"""companion — the tested library of the executable book on generative models.

Core modules (imported here): :mod:`~companion.gmm` (the exact Gaussian-mixture laboratory),
:mod:`~companion.schedules`, :mod:`~companion.metrics`, :mod:`~companion.utils`. Networks,
training, data and plotting are imported on use: ``from companion import nets, train, data, plot``.
Each chapter has its own module (``companion.ddpm``, ``companion.sde``, ...).
"""

from . import gmm, metrics, schedules, utils
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
    "schedules",
    "utils",
    "__version__",
]
