"""The committed result files and kept weights (installed with the package as ``companion._results``)."""
