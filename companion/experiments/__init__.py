"""Full runs: experiments too long for a notebook's 90-second budget, run by one command.

A chapter's seed sweeps, ablations and full configurations are registered here with the
exact configuration they run. One command regenerates them and writes each one to
``results/<chapter>/<name>.json`` with its numbers and its provenance (configuration, seeds,
git commit, library versions, seconds, CPU); the notebooks load those files and render them
with their provenance line, so every number the book shows has a code path::

    python -m companion.experiments --list            # what is registered
    python -m companion.experiments ch8               # every experiment of chapter 8
    python -m companion.experiments ch8 seeds_small   # one experiment
    python -m companion.experiments all               # everything (``make results``)

A result file whose stored configuration differs from the registered one is *stale*:
:func:`~companion.experiments.runner.load_result` refuses it and a unit test fails, so an edited experiment cannot keep
showing old numbers.
"""

from __future__ import annotations

from ..store import (
    CODE_PATHS,
    dirty_code_files,
    provenance_line,
    read_result,
    repo_root,
    result_path,
    results_dir,
    same_platform,
    save_weights,
    weights_file,
)

# the chapter modules register their experiments on import (static imports: no module is looked
# up by name at call time)
from . import ch4_restorer, ch5_digits, ch5_samplers, ch6_eae, ch7_gau, ch8_positions, ch9_triples  # noqa: E402, I001
from .runner import (
    CHAPTER_MODULES,
    Experiment,
    experiment,
    load_result,
    load_weights,
    map_seeds,
    registry,
    run_experiment,
)

__all__ = [
    "Experiment",
    "experiment",
    "registry",
    "run_experiment",
    "load_result",
    "read_result",
    "provenance_line",
    "same_platform",
    "save_weights",
    "map_seeds",
    "load_weights",
    "weights_file",
    "results_dir",
    "result_path",
    "repo_root",
    "dirty_code_files",
    "CHAPTER_MODULES",
    "CODE_PATHS",
    "ch4_restorer",
    "ch5_digits",
    "ch5_samplers",
    "ch6_eae",
    "ch7_gau",
    "ch8_positions",
    "ch9_triples",
]
