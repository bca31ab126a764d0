"""The diffusion layer: chapter 1's DDPM, chapter 2's SDEs, chapter 3's ODE, chapter 4's unified
corruptions, chapter 5's fast samplers and the preconditioned denoiser. It imports only
:mod:`companion.core`.
"""
