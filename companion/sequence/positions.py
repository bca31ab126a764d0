r"""Chapter 8 — Length extrapolation through position robustness.

A Transformer trained on sequences of length at most :math:`N` and tested on longer ones meets
two things it never saw: position values beyond :math:`N` and attention spread over more keys.
This module holds the pieces the chapter derives and tests:

* encodings that accept arbitrary (float) positions: :func:`sinusoidal_encoding`
  (equation :eq:`pos-sinusoid`), :class:`LearnedPositions` (a table read with linear interpolation)
  and :func:`apply_rope` (equation :eq:`pos-rope`);
* the three training position samplers (equation :eq:`pos-samplers`): :func:`plain_positions`,
  :func:`random_positions` (a sorted random subset of :math:`\{0,\dots,L-1\}`, Ruoss et al.),
  :func:`equal_mean_positions` (``linspace(0, 1, T) * nu`` with :math:`\nu` exponential) and its
  bounded Beta variant :func:`beta_positions`, plus the evenly spaced test positions
  :func:`uniform_positions`;
* attention with optional :math:`\log n` scaling (equation :eq:`pos-logn`): :func:`attention`,
  :func:`attention_entropy`, :func:`entropy_curve` and the large-:math:`n` closed form
  :func:`gaussian_entropy_limit` (equation :eq:`pos-entropy`);
* the CHE-style tasks :func:`first_marker_batch`, :func:`bucket_sort_batch`,
  :func:`even_pairs_batch`; the model :class:`PositionTransformer`; :func:`task_loss`,
  :func:`task_accuracy` and :func:`train_task`.

Conventions: a task batch is ``(tokens, targets)``, both ``(B, S)`` integer tensors, with target
``-100`` where no answer is scored. Positions are float tensors ``(B, S)``. All sequences of a
batch share one length (no padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.utils import check_int, check_positive, check_tensor, seed_generator

__all__ = [
    "sinusoidal_encoding",
    "LearnedPositions",
    "apply_rope",
    "plain_positions",
    "random_positions",
    "equal_mean_positions",
    "beta_positions",
    "uniform_positions",
    "log_n_scale",
    "attention",
    "attention_entropy",
    "entropy_curve",
    "gaussian_entropy_limit",
    "TASKS",
    "first_marker_batch",
    "bucket_sort_batch",
    "even_pairs_batch",
    "PositionTransformer",
    "task_loss",
    "task_accuracy",
    "train_task",
    "make_sampler",
    "TEST_POSITIONS",
    "extrapolation_table",
    "sequence_length",
]

IGNORE = -100


# ============================================================================ encodings
def _check_positions(positions: torch.Tensor) -> torch.Tensor:
    positions = check_tensor("positions", positions, ndim=(1, 2))
    if positions.numel() == 0:
        raise ValueError(f"positions must be non-empty, got shape {tuple(positions.shape)}")
    return positions


def _check_base(base: float) -> float:
    base = check_positive("base", base)
    if base <= 1:
        raise ValueError(f"base must be > 1 (frequencies base**(-2i/d) must decrease), got {base}")
    return base


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_dim(dim: int) -> int:
    dim = check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    return dim


def sinusoidal_encoding(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    r"""Sinusoidal encoding of (float) positions, equation :eq:`pos-sinusoid`:
    :math:`p_{2i}=\sin(t\,\omega_i),\ p_{2i+1}=\cos(t\,\omega_i)`, :math:`\omega_i=b^{-2i/d}`.

    positions: ``(S,)`` or ``(B, S)`` float; returns ``(..., S, dim)`` in the positions' dtype.
    """
    positions = _check_positions(positions)
    dim = _check_dim(dim)
    base = _check_base(base)
    i = torch.arange(dim // 2, dtype=positions.dtype, device=positions.device)
    omega = base ** (-2.0 * i / dim)
    angle = positions[..., None] * omega
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)


class LearnedPositions(nn.Module):
    r"""A learned table of ``size`` position vectors (init std 0.02), read at float positions by
    linear interpolation between neighbouring rows (at integer positions it is a plain lookup).

    forward(positions ``(B, S)`` float in ``[0, size-1]``) -> ``(B, S, dim)``.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size = check_int("size", size, minimum=2)
        self.table = nn.Parameter(0.02 * torch.randn(self.size, check_int("dim", dim, minimum=1)))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        positions = _check_positions(positions)
        if positions.min() < 0 or positions.max() > self.size - 1:
            raise ValueError(
                f"positions must lie in [0, {self.size - 1}] for a table of size {self.size}, "
                f"got range [{positions.min().item():g}, {positions.max().item():g}]"
            )
        lo = positions.floor().long().clamp(max=self.size - 2)
        w = (positions - lo.to(positions.dtype))[..., None].to(self.table.dtype)
        return (1 - w) * self.table[lo] + w * self.table[lo + 1]


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    r"""Rotary position embedding, equation :eq:`pos-rope`: rotate each pair :math:`(x_{2i},x_{2i+1})` of
    a query/key by the angle :math:`t\,\omega_i`. Then :math:`\langle R_m q, R_n k\rangle` depends on
    :math:`m-n` only.

    x: ``(B, H, S, d)`` or ``(B, S, d)`` with even ``d``; positions: ``(B, S)`` or ``(S,)``.
    """
    x = check_tensor("x", x, ndim=(3, 4))
    if 0 in x.shape:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    positions = _check_positions(positions)
    d = _check_dim(x.shape[-1])
    if positions.shape[-1] != x.shape[-2]:
        raise ValueError(f"positions has length {positions.shape[-1]} but x has {x.shape[-2]} tokens")
    if positions.ndim == 2 and positions.shape[0] != x.shape[0]:
        raise ValueError(f"positions has batch {positions.shape[0]} but x has {x.shape[0]}")
    base = _check_base(base)
    i = torch.arange(d // 2, dtype=x.dtype, device=x.device)
    angle = positions.to(x.dtype)[..., None] * base ** (-2.0 * i / d)  # (..., S, d/2)
    if x.ndim == 4 and angle.ndim == 3:
        angle = angle[:, None]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


# ============================================================================ samplers
def plain_positions(batch: int, length: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Positions ``0, 1, ..., length-1`` for every row, equation :eq:`pos-samplers` (a): ``(batch, length)``."""
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=1)
    dtype = _check_dtype(dtype)
    return torch.arange(length, dtype=dtype).expand(batch, length).clone()


def random_positions(
    batch: int,
    length: int,
    max_len: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Ruoss et al.'s randomized positions, equation :eq:`pos-samplers` (b): per row, ``length`` distinct
    integers drawn uniformly without replacement from :math:`\{0,\dots,L-1\}` (``L = max_len``),
    sorted increasingly. Returns ``(batch, length)``.
    """
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=1)
    max_len = check_int("max_len", max_len, minimum=1)
    if length > max_len:
        raise ValueError(f"length ({length}) must be <= max_len ({max_len}) to draw distinct positions")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator or None (the global one)")
    # argsort of iid uniforms is a uniform random permutation; its first `length` entries are a
    # uniform subset (vectorised over the batch)
    keys = torch.rand(batch, max_len, generator=generator)
    subset = keys.argsort(dim=1)[:, :length]
    return subset.sort(dim=1).values.to(dtype)


def equal_mean_positions(
    batch: int,
    length: int,
    generator: torch.Generator,
    *,
    mean: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Su's equal-mean random positions, equation :eq:`pos-samplers` (c): ``linspace(0, 1, T) * nu`` with
    :math:`\nu\sim\mathrm{Exp}` of mean ``mean`` (default :math:`T-1`, so that the *average*
    positions are exactly :math:`0,1,\dots,T-1`, the test positions). Float positions ``(batch, T)``.
    """
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator or None (the global one)")
    mean = float(length - 1) if mean is None else check_positive("mean", mean)
    nu = -mean * torch.log1p(-torch.rand(batch, 1, generator=generator, dtype=torch.float64))
    grid = torch.linspace(0.0, 1.0, length, dtype=torch.float64)
    return (grid * nu).to(dtype)


def beta_positions(
    batch: int,
    length: int,
    max_len: int,
    generator: torch.Generator,
    *,
    alpha: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Su's bounded equal-mean variant, equation :eq:`pos-samplers` (d): ``linspace(0, 1, T) * nu * (L-1)``
    with :math:`\nu\sim\mathrm{Beta}(\alpha,\beta)` on :math:`[0,1]` and
    :math:`\beta=\alpha\,(L-T)/(T-1)`, so that :math:`\mathbb E\,\nu=(T-1)/(L-1)`: the *average*
    positions are exactly :math:`0,1,\dots,T-1` (as for :func:`equal_mean_positions`) and no
    position ever exceeds :math:`L-1` (``L = max_len``), so a table of ``L`` rows can read them.

    ``alpha`` is the spare parameter once the mean is fixed: at ``alpha = 1`` the density of
    :math:`\nu` is :math:`\beta(1-x)^{\beta-1}`, whose rescaling :math:`(L-1)\nu` tends to the
    exponential law of mean :math:`T-1` as :math:`L\to\infty`; a smaller ``alpha`` puts more mass near
    both ends, hence more long stretches. Float positions ``(batch, T)``; ``T = 1`` gives position 0.
    """
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=1)
    max_len = check_int("max_len", max_len, minimum=2)
    if length >= max_len:
        raise ValueError(f"length ({length}) must be < max_len ({max_len}): the mean stretch (T-1)/(L-1) must be < 1")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator or None (the global one)")
    alpha = check_positive("alpha", alpha)
    dtype = _check_dtype(dtype)
    if length == 1:
        return torch.zeros(batch, 1, dtype=dtype)
    import numpy as np

    # torch has no seeded Beta sampler: draw a seed from the generator, then use NumPy's Beta
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    b = alpha * (max_len - length) / (length - 1)
    nu = torch.from_numpy(rng.beta(alpha, b, size=(batch, 1)))
    grid = torch.linspace(0.0, 1.0, length, dtype=torch.float64)
    return (grid * nu * (max_len - 1)).to(dtype)


def uniform_positions(batch: int, length: int, max_len: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Evenly spaced test positions ``linspace(0, max_len-1, length)`` (the test companion of
    :func:`random_positions`), rounded to integers: ``(batch, length)``."""
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=1)
    max_len = check_int("max_len", max_len, minimum=1)
    if length > max_len:
        raise ValueError(f"length ({length}) must be <= max_len ({max_len})")
    return torch.linspace(0, max_len - 1, length).round().to(dtype).expand(batch, length).clone()


# ============================================================================ attention
def log_n_scale(n: int | torch.Tensor, train_length: int) -> float | torch.Tensor:
    r"""The factor :math:`\log_m n=\log n/\log m` of equation :eq:`pos-logn` (``m = train_length``).

    ``n >= 2`` (an int or a tensor of them): at ``n = 1`` the factor is 0, which would make the
    logits vanish (uniform attention); a single key needs no scaling (its weight is 1 whatever the
    factor), so :func:`attention` skips the factor there."""
    train_length = check_int("train_length", train_length, minimum=2)
    if isinstance(n, torch.Tensor):
        check_tensor("n", n, floating=False)
        if n.numel() == 0 or (n < 2).any():
            raise ValueError(f"n must be >= 2 (log_1 = 0 would give uniform attention), got {n.tolist()}")
        return n.log() / math.log(train_length)
    n = check_int("n", n, minimum=2)
    return math.log(n) / math.log(train_length)


def _scaled_logits(q: torch.Tensor, k: torch.Tensor, train_length: int | None) -> torch.Tensor:
    """Attention logits :math:`\\lambda\\,qk^\top/\\sqrt d` with the log-n factor of equation :eq:`pos-logn`."""
    if train_length is not None:
        train_length = check_int("train_length", train_length, minimum=2)
    lam = 1.0 if train_length is None or k.shape[-2] == 1 else log_n_scale(k.shape[-2], train_length)
    return (lam / math.sqrt(q.shape[-1])) * q @ k.transpose(-1, -2)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    train_length: int | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention, optionally :math:`\log n`-scaled (equation :eq:`pos-logn`):
    :math:`\mathrm{softmax}(\lambda\,QK^\top/\sqrt d)\,V` with :math:`\lambda=\log_m n` if
    ``train_length = m`` is given, else :math:`\lambda=1` (``n`` = number of keys).

    q: ``(..., S, d)``, k, v: ``(..., n, d)``; returns ``(..., S, d_v)`` (and the weights
    ``(..., S, n)`` if ``return_weights``).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t)
        if t.ndim < 2 or 0 in t.shape[-2:] or 0 in t.shape[:-2]:
            raise ValueError(f"{name} must have at least 2 dims (..., tokens, features), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the feature size, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of tokens, got {k.shape[-2]} and {v.shape[-2]}")
    w = _scaled_logits(q, k, train_length).softmax(dim=-1)
    out = w @ v
    return (out, w) if return_weights else out


def attention_entropy(q: torch.Tensor, k: torch.Tensor, *, train_length: int | None = None) -> torch.Tensor:
    r"""Entropy (nats) of each attention row, :math:`H=-\sum_j a_{ij}\log a_{ij}`, with the weights
    of :func:`attention`. q: ``(..., S, d)``, k: ``(..., n, d)``; returns ``(..., S)``."""
    for name, t in (("q", q), ("k", k)):
        check_tensor(name, t)
        if t.ndim < 2 or 0 in t.shape:
            raise ValueError(f"{name} must be non-empty with at least 2 dims (..., tokens, features), "
                             f"got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the feature size, got {q.shape[-1]} and {k.shape[-1]}")
    logp = _scaled_logits(q, k, train_length).log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(-1)


def entropy_curve(
    lengths: list[int],
    *,
    dim: int = 64,
    scale: float = 1.0,
    queries: int = 256,
    train_length: int | None = None,
    seed: int | torch.Generator = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Average attention entropy vs context length for random Gaussian queries and keys with
    entries of standard deviation ``sqrt(scale)`` (so the logits :math:`q\cdot k/\sqrt d` have
    variance ``scale**2``). Keys for length ``n`` are the first ``n`` of one shared draw (so the
    curve is smooth in ``n``). Returns ``(len(lengths),)`` mean entropies (nats), equation :eq:`pos-entropy`.
    """
    if not lengths:
        raise ValueError("lengths must be a non-empty list of ints")
    lengths = [check_int("lengths[i]", n, minimum=1) for n in lengths]
    dim = check_int("dim", dim, minimum=1)
    scale = check_positive("scale", scale)
    queries = check_int("queries", queries, minimum=1)
    if train_length is not None:
        train_length = check_int("train_length", train_length, minimum=2)
    dtype = _check_dtype(dtype)
    g = seed_generator(seed)
    s = math.sqrt(scale)
    q = s * torch.randn(queries, dim, generator=g, dtype=dtype)
    k = s * torch.randn(max(lengths), dim, generator=g, dtype=dtype)
    return torch.stack([attention_entropy(q, k[:n], train_length=train_length).mean() for n in lengths])


def gaussian_entropy_limit(n: float | torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    r"""Large-:math:`n` limit of the attention entropy when the logits are iid
    :math:`\mathcal N(0,\sigma^2)`, equation :eq:`pos-entropy`: :math:`H\approx\log n-\sigma^2/2`
    (law of large numbers in the numerator and denominator of the softmax)."""
    for name, val in (("n", n), ("sigma", sigma)):
        if isinstance(val, bool) or not isinstance(val, (int, float, torch.Tensor)):
            raise TypeError(f"{name} must be a number or a tensor, got {type(val).__name__}")
    n = torch.as_tensor(n, dtype=torch.float64)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if not (torch.isfinite(n).all() and torch.isfinite(sigma).all()):
        raise ValueError("n and sigma must be finite")
    if (n < 1).any():
        raise ValueError("n must be >= 1")
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0")
    return n.log() - sigma**2 / 2


# ============================================================================ tasks
def _task_args(batch: int, length: int, generator: torch.Generator) -> tuple[int, int]:
    batch = check_int("batch", batch, minimum=1)
    length = check_int("length", length, minimum=2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator or None (the global one)")
    return batch, length


def first_marker_batch(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r"""*Which marker comes first?* ``length`` tokens of filler symbols {0..3} containing the markers
    A = 4 and B = 5 once each, then a query token 6; the target at the query is 0 if A precedes B,
    else 1. Returns tokens, targets ``(batch, length + 1)``. Vocabulary 7."""
    batch, length = _task_args(batch, length, generator)
    tok = torch.randint(0, 4, (batch, length + 1), generator=generator)
    where = torch.rand(batch, length, generator=generator).argsort(dim=1)[:, :2]
    rows = torch.arange(batch)
    tok[rows, where[:, 0]] = 4
    tok[rows, where[:, 1]] = 5
    tok[:, -1] = 6
    tgt = torch.full_like(tok, IGNORE)
    tgt[:, -1] = (where[:, 1] < where[:, 0]).long()
    return tok, tgt


def bucket_sort_batch(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CHE *Bucket Sort* on 5 symbols: ``length`` inputs in {0..4}, then ``length`` query tokens 5;
    the target at the t-th query is the t-th smallest input. Returns ``(batch, 2 * length)``. Vocabulary 6."""
    batch, length = _task_args(batch, length, generator)
    x = torch.randint(0, 5, (batch, length), generator=generator)
    tok = torch.cat([x, torch.full_like(x, 5)], dim=1)
    tgt = torch.cat([torch.full_like(x, IGNORE), x.sort(dim=1).values], dim=1)
    return tok, tgt


def even_pairs_batch(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CHE *Even Pairs*: a binary string of ``length`` symbols {0, 1}, then a query token 2; the
    target is 1 if the numbers of "01" and "10" pairs are equal, i.e. first symbol == last symbol.
    Returns ``(batch, length + 1)``. Vocabulary 3."""
    batch, length = _task_args(batch, length, generator)
    x = torch.randint(0, 2, (batch, length), generator=generator)
    tok = torch.cat([x, torch.full((batch, 1), 2, dtype=x.dtype)], dim=1)
    tgt = torch.full_like(tok, IGNORE)
    tgt[:, -1] = (x[:, 0] == x[:, -1]).long()
    return tok, tgt


# name -> (batch function, vocabulary size)
TASKS: dict[str, tuple[Callable[[int, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]], int]] = {
    "first": (first_marker_batch, 7),
    "sort": (bucket_sort_batch, 6),
    "evenpairs": (even_pairs_batch, 3),
}


# ============================================================================ model
class _Block(nn.Module):
    """Pre-LN block: x + MHA(LN x), then x + FFN(LN x) (GELU, 4d)."""

    def __init__(self, dim: int, heads: int, rope: bool, rope_base: float):
        super().__init__()
        self.heads, self.rope, self.rope_base = heads, rope, rope_base
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, train_length: int | None) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base)
        a = attention(q, k, v, train_length=train_length)
        assert isinstance(a, torch.Tensor)  # (no return_weights)
        x = x + self.out(a.transpose(1, 2).reshape(B, S, D))
        return x + self.ffn(self.ln2(x))


class PositionTransformer(nn.Module):
    r"""Encoder-only Pre-LN Transformer whose position information enters through float positions.

    ``pe``: ``"sin"`` (equation :eq:`pos-sinusoid` added to the token embeddings), ``"learned"``
    (:class:`LearnedPositions` of ``max_len`` rows) or ``"rope"`` (equation :eq:`pos-rope` in every layer).
    ``train_length``: if set, attention is :math:`\log n`-scaled (equation :eq:`pos-logn`) with :math:`m`
    = ``train_length`` (the number of tokens of the longest training sequence).

    forward(tokens ``(B, S)`` long, positions ``(B, S)`` float) -> logits ``(B, S, vocab)``.
    """

    def __init__(
        self,
        vocab: int,
        *,
        dim: int = 64,
        heads: int = 4,
        layers: int = 3,
        pe: str = "sin",
        max_len: int = 256,
        base: float = 10000.0,
        train_length: int | None = None,
    ):
        super().__init__()
        vocab = check_int("vocab", vocab, minimum=2)
        dim = _check_dim(dim)
        heads = check_int("heads", heads, minimum=1)
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must split into {heads} heads of even size")
        if pe not in ("sin", "learned", "rope"):
            raise ValueError(f"pe must be 'sin', 'learned' or 'rope', got {pe!r}")
        self.pe, self.base, self.dim = pe, _check_base(base), dim
        max_len = check_int("max_len", max_len, minimum=2)
        self.train_length = None if train_length is None else check_int("train_length", train_length, minimum=2)
        self.embed = nn.Embedding(vocab, dim)
        self.learned = LearnedPositions(max_len, dim) if pe == "learned" else None
        self.blocks = nn.ModuleList(
            _Block(dim, heads, pe == "rope", base) for _ in range(check_int("layers", layers, minimum=1))
        )
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.ndim != 2:
            raise TypeError("tokens must be a (B, S) torch.long tensor")
        vocab = self.embed.num_embeddings
        if tokens.numel() == 0 or tokens.min() < 0 or tokens.max() >= vocab:
            raise ValueError(f"tokens must be a non-empty tensor of ids in [0, {vocab}), got shape "
                             f"{tuple(tokens.shape)}")
        positions = check_tensor("positions", positions, ndim=2)
        if positions.shape != tokens.shape:
            raise ValueError(f"positions {tuple(positions.shape)} must match tokens {tuple(tokens.shape)}")
        x = self.embed(tokens)
        if self.pe == "sin":
            x = x + sinusoidal_encoding(positions.to(x.dtype), self.dim, self.base)
        elif self.learned is not None:  # pe == "learned"
            x = x + self.learned(positions.to(x.dtype))
        for blk in self.blocks:
            x = blk(x, positions.to(x.dtype), self.train_length)
        return self.head(self.ln(x))


# ============================================================================ training
PositionSampler = Callable[[int, int, torch.Generator], torch.Tensor]


def task_loss(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the answer tokens only (targets ``-100`` elsewhere)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long:
        raise TypeError("targets must be a torch.long tensor")
    if not isinstance(tokens, torch.Tensor) or targets.shape != tokens.shape:
        raise ValueError(f"targets {tuple(targets.shape)} must have the shape of tokens")
    logits = model(tokens, positions)
    valid = (targets == IGNORE) | ((targets >= 0) & (targets < logits.shape[-1]))
    if not valid.all():
        raise ValueError(f"targets must be {IGNORE} or class ids in [0, {logits.shape[-1]})")
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def task_accuracy(
    model: nn.Module,
    task: str,
    length: int,
    positions: str | PositionSampler = "plain",
    *,
    n: int = 256,
    max_len: int = 256,
    seed: int = 12345,
) -> float:
    r"""Per-answer-token accuracy on ``n`` fresh sequences of task length ``length``.

    ``positions``: ``"plain"`` (0, 1, ...), ``"uniform"`` (evenly spaced in ``[0, max_len)``,
    :func:`uniform_positions`) or a sampler ``(batch, seq_len, generator) -> (batch, seq_len)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    max_len = check_int("max_len", max_len, minimum=1)
    n = check_int("n", n, minimum=1)
    fn, _ = TASKS[task]
    g = seed_generator(seed)
    tok, tgt = fn(n, length, g)
    S = tok.shape[1]
    if positions == "plain":
        pos = plain_positions(n, S)
    elif positions == "uniform":
        pos = uniform_positions(n, S, max_len)
    elif callable(positions):
        pos = positions(n, S, g)
    else:
        raise ValueError(f"positions must be 'plain', 'uniform' or a sampler, got {positions!r}")
    was_training = model.training
    model.eval()
    pred = model(tok, pos).argmax(-1)
    model.train(was_training)
    mask = tgt != IGNORE
    return (pred[mask] == tgt[mask]).double().mean().item()


def make_sampler(kind: str, max_len: int = 256, *, alpha: float = 1.0) -> PositionSampler:
    """Training position sampler by name: ``"plain"``, ``"random"`` (``max_len`` = L), ``"equal_mean"``
    or ``"beta"`` (:func:`beta_positions` on ``[0, max_len-1]`` with spare parameter ``alpha``)."""
    max_len = check_int("max_len", max_len, minimum=1)
    if kind == "plain":
        return lambda b, s, g: plain_positions(b, s)
    if kind == "random":
        return lambda b, s, g: random_positions(b, s, max_len, g)
    if kind == "equal_mean":
        return lambda b, s, g: equal_mean_positions(b, s, g)
    if kind == "beta":
        alpha = check_positive("alpha", alpha)
        return lambda b, s, g: beta_positions(b, s, max_len, g, alpha=alpha)
    raise ValueError(f"kind must be 'plain', 'random', 'equal_mean' or 'beta', got {kind!r}")


def sequence_length(task: str, length: int) -> int:
    """Number of tokens of a ``task`` sequence of task length ``length`` (e.g. ``2 * length`` for sort):
    the :math:`m` of equation :eq:`pos-logn` when ``length`` is the longest training length."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    length = check_int("length", length, minimum=2)
    return TASKS[task][0](1, length, torch.Generator().manual_seed(0))[0].shape[1]


def train_task(
    task: str,
    positions: str = "plain",
    *,
    pe: str = "sin",
    min_length: int = 2,
    max_length: int = 16,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 1e-3,
    dim: int = 64,
    heads: int = 4,
    layers: int = 3,
    max_len: int = 256,
    train_length: int | None = None,
    log_n: bool = False,
    beta_alpha: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Train a :class:`PositionTransformer` on ``task`` with task lengths uniform in
    ``[min_length, max_length]`` (one length per batch) and the training positions ``positions``
    (see :func:`make_sampler`), with :func:`companion.core.train.fit` (AdamW, weight decay 0.01, no EMA).
    Weights are seeded by ``seed``, data by ``seed + 1``. ``log_n=True`` scales the attention logits
    by :math:`\\log_m n` (equation :eq:`pos-logn`) with :math:`m` the number of tokens of the longest
    training sequence (:func:`sequence_length`), unless ``train_length`` gives :math:`m` explicitly.
    ``beta_alpha`` is the spare parameter of the ``"beta"`` sampler (:func:`beta_positions`).
    Returns the trained model (eval mode)."""
    from ..core.train import fit

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    min_length = check_int("min_length", min_length, minimum=2)
    max_length = check_int("max_length", max_length, minimum=min_length)
    sampler = make_sampler(positions, max_len, alpha=beta_alpha)
    if not isinstance(log_n, bool):
        raise TypeError(f"log_n must be a bool, got {type(log_n).__name__}")
    if log_n and train_length is None:
        train_length = sequence_length(task, max_length)
    fn, vocab = TASKS[task]
    seed = check_int("seed", seed, minimum=0)

    def draw(b: int, g: torch.Generator):
        T = int(torch.randint(min_length, max_length + 1, (1,), generator=g))
        tok, tgt = fn(b, T, g)
        return tok, tgt, sampler(b, tok.shape[1], g)

    def loss_fn(m: nn.Module, batch, g: torch.Generator) -> torch.Tensor:
        return task_loss(m, *batch)

    # the weights (and any dropout) draw from the global RNG seeded by ``seed``, inside a fork so the
    # caller's random state is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PositionTransformer(
            vocab, dim=dim, heads=heads, layers=layers, pe=pe, max_len=max_len, train_length=train_length
        )
        res = fit(
            model,
            loss_fn,
            draw,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed + 1,
            ema_decay=None,
            weight_decay=0.01,
            progress=progress,
            desc=f"{task}/{pe}/{positions}",
        )
    return res.model


# test positions that go with each training sampler (Su: evenly spaced beats random at test time)
TEST_POSITIONS = {"plain": "plain", "random": "uniform", "equal_mean": "plain", "beta": "plain"}


def extrapolation_table(
    tasks: list[str],
    kinds: list[str],
    seeds: list[int],
    lengths: list[int],
    *,
    n: int = 256,
    progress: bool = True,
    random_test: bool = False,
    **train_kw,
) -> list[dict]:
    """Train one model per (task, training positions, seed) with :func:`train_task` and measure its
    accuracy at each test length (test positions from ``TEST_POSITIONS``). Returns one row per model:
    ``{"task", "positions", "seed", "seconds", "acc": {length: accuracy}}``. With ``random_test``, a
    model trained on ``"random"`` positions is also tested on random positions (a fresh sorted subset
    per sequence, the training law) and the row gets ``"acc_random_test": {length: accuracy}``."""
    import time

    rows = []
    for task in tasks:
        for kind in kinds:
            for seed in seeds:
                t0 = time.perf_counter()
                model = train_task(task, kind, seed=seed, progress=progress, **train_kw)
                seconds = time.perf_counter() - t0
                max_len = train_kw.get("max_len", 256)
                acc = {
                    L: task_accuracy(model, task, L, TEST_POSITIONS[kind], n=n, max_len=max_len, seed=10_000 + seed)
                    for L in lengths
                }
                row = {"task": task, "positions": kind, "seed": seed, "seconds": seconds, "acc": acc}
                if random_test and kind == "random":
                    row["acc_random_test"] = {
                        L: task_accuracy(model, task, L, make_sampler("random", max_len), n=n, max_len=max_len,
                                         seed=10_000 + seed)
                        for L in lengths
                    }
                rows.append(row)
    return rows
