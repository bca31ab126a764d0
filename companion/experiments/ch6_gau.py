"""Full runs of chapter 6 (gated attention units): seed sweeps and arms too long for the notebook."""

from __future__ import annotations

from . import experiment  # noqa: F401 - used by the registered experiments below
