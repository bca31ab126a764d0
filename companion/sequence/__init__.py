"""The sequence-model layer: chapter 6's entropic autoencoder, chapter 7's gated attention units,
chapter 8's position encodings and chapter 9's triple extractor. It imports only
:mod:`companion.core`.
"""
