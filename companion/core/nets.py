r"""Small networks that train in seconds on a CPU.

* :class:`TimeMLP` — an MLP for 2-D (or any low-dimensional) data, conditioned on time by a
  sinusoidal embedding; the default denoiser / noise predictor / score model of the book.
* :class:`UNet` — a small noise-conditioned U-Net for images (the digits denoiser of chapters 1–4).
* :class:`DigitClassifier` — a small conv classifier whose penultimate features define the
  Fréchet distance of :mod:`companion.core.metrics`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .utils import check_batch, check_int, check_positive, check_tensor, checking

__all__ = ["SinusoidalEmbedding", "TimeMLP", "UNet", "DigitClassifier"]


def _time_tensor(t, n: int, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a time (float, 0-d or ``(n,)`` tensor) to shape ``(n,)`` in ``like``'s dtype."""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.full((n,), float(t), dtype=like.dtype, device=like.device)
    if not checking():  # torch.compile traces: no value checks (utils.checking)
        t = t.to(dtype=like.dtype, device=like.device)
        return t.expand(n) if t.ndim == 0 else t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a float or a tensor, got {type(t).__name__}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must be a real (float or integer) tensor, got dtype {t.dtype}")
    t = t.to(dtype=like.dtype, device=like.device)
    if t.device.type != "meta" and not torch.isfinite(t).all():  # meta tensors hold no values
        raise ValueError("t contains NaN or infinite values")
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"t must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t


class SinusoidalEmbedding(nn.Module):
    r"""Transformer-style embedding of a scalar time: :math:`[\sin(\omega_j t),\cos(\omega_j t)]`
    with frequencies :math:`\omega_j` geometric between 1 and ``max_freq``. ``(n,) -> (n, dim)``."""

    def __init__(self, dim: int = 64, max_freq: float = 1000.0):
        super().__init__()
        dim = check_int("dim", dim, minimum=2)
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        max_freq = check_positive("max_freq", max_freq)
        freqs = torch.exp(torch.linspace(0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs)

    freqs: torch.Tensor

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = check_tensor("t", t, ndim=1)
        arg = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class TimeMLP(nn.Module):
    r"""MLP :math:`(x, t)\mapsto` output of the same shape as ``x``; ``x``: ``(n, d)``, ``t``: float or ``(n,)``.

    Time enters through :class:`SinusoidalEmbedding` followed by a linear layer, added to every
    hidden layer (a cheap FiLM without scale). The network sees ``t * time_scale``; the
    embedding's frequencies run from 1 to ``max_freq``, so the scaled time should lie in
    about :math:`[0, 1]`: use ``time_scale=1/T`` for integer steps ``0..T`` (with
    ``time_scale=1`` the highest frequencies alias and each step is learned separately —
    measured in chapter 1: 17 % vs 5 % error of the learned noise) and ``1`` for
    :math:`t\in[0,1]`.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        emb_dim: int = 64,
        time_scale: float = 1.0,
        max_freq: float = 1000.0,
    ):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        self.time_scale = check_positive("time_scale", time_scale)
        self.embed = SinusoidalEmbedding(emb_dim, max_freq)
        self.inp = nn.Linear(dim, hidden)
        self.temb = nn.ModuleList([nn.Linear(emb_dim, hidden) for _ in range(depth)])
        self.hidden = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        check_tensor("x", x, ndim=2)
        check_batch("x", x, allow_empty=True)
        if checking() and x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        e = self.embed(_time_tensor(t, x.shape[0], x) * self.time_scale)
        h = self.act(self.inp(x) + self.temb[0](e))
        for lin, te in zip(self.hidden, self.temb[1:], strict=True):
            h = self.act(lin(h) + te(e))
        return self.out(h)


class _ResBlock(nn.Module):
    """Pre-norm residual block whose second normalisation is scaled and shifted by the noise
    embedding (adaptive group norm); the last conv starts at zero, so the block starts as identity."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.n1 = nn.GroupNorm(math.gcd(8, c_in), c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.n2 = nn.GroupNorm(math.gcd(8, c_out), c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act, self.drop = nn.SiLU(), nn.Dropout(dropout)
        for p in self.c2.parameters():  # weight and bias
            nn.init.zeros_(p)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.c1(self.act(self.n1(h)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        z = self.c2(self.drop(self.act(self.n2(z) * (1 + scale) + shift)))
        return self.skip(h) + z


class UNet(nn.Module):
    r"""Small noise-conditioned U-Net for images: ``(n, C, H, W), t -> (n, C, H, W)``.

    The network :math:`F` of the preconditioned denoiser of chapter 3 (equation
    :eq:`ode-precond`, :class:`companion.diffusion.precond.ScoreNet`), which calls it with
    :math:`c_{\rm in}x` and :math:`t=c_{\rm noise}=\tfrac14\ln\sigma`. One resolution level per
    entry of ``mult`` (``ch * mult[i]`` channels, ``blocks`` residual blocks each, halving
    H and W between levels), a middle block, and the mirror path with skip connections. The
    time ``t`` (float or ``(n,)``) enters every block through a sinusoidal embedding with
    frequencies 1..``max_freq``, which should resolve ``t`` over its range (about
    :math:`[-2, 2]` for :math:`c_{\rm noise}`). The output layer starts at zero.
    H and W must be divisible by :math:`2^{\text{len(mult)}-1}`.
    """

    def __init__(self, in_ch: int = 1, ch: int = 32, mult: tuple[int, ...] = (1, 2), blocks: int = 1,
                 emb_dim: int = 64, max_freq: float = 16.0, dropout: float = 0.0, time_scale: float = 1.0):
        super().__init__()
        self.time_scale = check_positive("time_scale", time_scale)
        self.in_ch = check_int("in_ch", in_ch, minimum=1)
        ch = check_int("ch", ch, minimum=1)
        if not isinstance(mult, (tuple, list)) or not mult:
            raise TypeError(f"mult must be a non-empty tuple of positive ints, got {mult!r}")
        self.mult = tuple(check_int("mult entries", m, minimum=1) for m in mult)
        self.blocks = check_int("blocks", blocks, minimum=1)
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed = nn.Sequential(SinusoidalEmbedding(emb_dim, max_freq), nn.Linear(emb_dim, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim), nn.SiLU())
        self.inp = nn.Conv2d(self.in_ch, ch, 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        skips, c = [ch], ch
        for level, m in enumerate(self.mult):
            for _ in range(self.blocks):
                self.down.append(_ResBlock(c, ch * m, emb_dim, dropout))
                c = ch * m
                skips.append(c)
            if level < len(self.mult) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = _ResBlock(c, c, emb_dim, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(self.mult))):
            for _ in range(self.blocks):
                self.up.append(_ResBlock(c + skips.pop(), ch * self.mult[level], emb_dim, dropout))
                c = ch * self.mult[level]
            if level > 0:
                self.upsample.append(nn.ConvTranspose2d(c, c, 2, stride=2))
        self.out = nn.Sequential(nn.GroupNorm(math.gcd(8, c), c), nn.SiLU(), nn.Conv2d(c, self.in_ch, 3, padding=1))
        for p in self.out[-1].parameters():  # weight and bias
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        check_tensor("x", x, ndim=4)
        check_batch("x", x, allow_empty=True)
        k = 2 ** (len(self.mult) - 1)
        if checking() and (x.shape[1] != self.in_ch or x.shape[2] % k or x.shape[3] % k):
            raise ValueError(f"x must have shape (n, {self.in_ch}, H, W) with H and W divisible by {k}, "
                             f"got {tuple(x.shape)}")
        e = self.embed(_time_tensor(t, x.shape[0], x) * self.time_scale)
        h = self.inp(x)
        hs, blocks = [h], iter(self.down)
        for level in range(len(self.mult)):
            for _ in range(self.blocks):
                h = next(blocks)(h, e)
                hs.append(h)
            if level < len(self.mult) - 1:
                h = self.pool[level](h)
        h = self.mid(h, e)
        blocks, ups = iter(self.up), iter(self.upsample)
        for level in reversed(range(len(self.mult))):
            for _ in range(self.blocks):
                h = next(blocks)(torch.cat([h, hs.pop()], dim=1), e)
            if level > 0:
                h = next(ups)(h)
        return self.out(h)


class DigitClassifier(nn.Module):
    """Conv classifier for 8×8 digits; ``features`` gives the 64-d penultimate activations."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(64 * 16, 64), nn.SiLU(),
        )
        self.head = nn.Linear(64, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4)
        if x.shape[1:] != (1, 8, 8):
            raise ValueError(f"x must have shape (n, 1, 8, 8), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
