"""Full runs of chapter 8 (triple extraction): seed sweeps and arms too long for the notebook."""

from __future__ import annotations

from . import experiment  # noqa: F401 - used by the registered experiments below
