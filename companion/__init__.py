"""companion — the tested library of the executable book on generative models.

The package is layered; each folder imports only the ones above it in this list:

- :mod:`companion.core`: the exact Gaussian-mixture laboratory (:mod:`~companion.core.gmm`),
  schedules, metrics, networks, the training loop, data, the sample-quality protocol, input checks;
- :mod:`companion.store`: result files and kept weights, with their provenance;
- :mod:`companion.diffusion`: one module per diffusion chapter, :mod:`~companion.diffusion.ddpm` (ch. 1),
  :mod:`~companion.diffusion.sde` (ch. 2), :mod:`~companion.diffusion.ode` (ch. 3),
  :mod:`~companion.diffusion.unified` (ch. 4), :mod:`~companion.diffusion.samplers` (ch. 5), and
  :mod:`~companion.diffusion.precond`: the denoiser convention, the preconditioned network and the converters;
- :mod:`companion.sequence`: :mod:`~companion.sequence.eae` (ch. 6), :mod:`~companion.sequence.gau`
  (ch. 7), :mod:`~companion.sequence.positions` (ch. 8), :mod:`~companion.sequence.triples` (ch. 9);
- :mod:`companion.recipes`: the trained models (:mod:`~companion.recipes.denoiser`);
- :mod:`companion.experiments`: the registered full runs that write the result files;
- :mod:`companion.book`: glue, tables, figure style and source display for the notebooks.

Every module keeps its short name: ``from companion import ddpm, samplers`` and
``import companion.samplers`` work as before.

Example::

    from companion import lab_2d, DiscreteSchedule, ddpm
    law, sched = lab_2d(), DiscreteSchedule.su(1000).subsequence(50)
    x_T = law.noised(sched.alpha_bar[-1].item(), sched.beta_bar[-1].item()).sample(2000, 0)
    x_0 = ddpm.sample(ddpm.exact_eps_model(law, DiscreteSchedule.su(1000)), sched, x_T, eta=0.0)
"""

import sys as _sys

from ._version import __version__
from .book import plot, report
from .book.source import show_source
from .core import data, gmm, metrics, nets, sample_quality, schedules, train, utils
from .core.gmm import GaussianMixture, lab_1d, lab_2d
from .core.schedules import DiscreteSchedule, VESchedule, VPSchedule, su_vp
from .diffusion import ddpm, ode, precond, samplers, sde, unified
from .recipes import denoiser
from .sequence import eae, gau, positions, triples

#: short module name -> its place in the layers (``companion.<name>`` is that module)
MODULES = {
    "utils": "core", "gmm": "core", "schedules": "core", "metrics": "core", "nets": "core",
    "train": "core", "data": "core", "sample_quality": "core",
    "ddpm": "diffusion", "sde": "diffusion", "ode": "diffusion", "samplers": "diffusion", "unified": "diffusion", "precond": "diffusion",
    "eae": "sequence", "gau": "sequence", "positions": "sequence", "triples": "sequence",
    "denoiser": "recipes", "plot": "book", "report": "book",
}
for _name in MODULES:
    _sys.modules[f"{__name__}.{_name}"] = globals()[_name]

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
    "precond",
    "denoiser",
    "sample_quality",
    "unified",
    "eae",
    "gau",
    "positions",
    "triples",
    "schedules",
    "utils",
    "data",
    "nets",
    "train",
    "plot",
    "report",
    "__version__",
]
