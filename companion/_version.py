"""The package version (one place: the provenance of every result file records it)."""

__version__ = "0.1.0"
