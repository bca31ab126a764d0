r"""Chapter 7 — Gated attention units train deep without warmup.

A Post-Norm block :math:`x\leftarrow\mathrm{LN}(x+F(x))` is close to the identity when its
branch :math:`F` starts small, and a stack of near-identity blocks trains without warmup. A
freshly initialised gated attention unit (GAU, equation :eq:`gau-def`) has a small output because its
attention matrix :math:`A=\mathrm{relu}^2(QK^\top)/(ns)` is small; this module holds the layer,
the closed-form size estimates of its initial output (equations :eq:`gau-moments` … :eq:`gau-rms`), a
Monte-Carlo twin of those estimates, a standard Post-LN Transformer block of matched size with
DeepNorm as an option (equation :eq:`gau-deepnorm`), and the sequence-reversal task of the experiment.

Public surface:

* :func:`swish_moments` — :math:`\mu=\mathbb E\,\phi(\varepsilon)`, :math:`\nu^2=\mathbb E\,\phi(\varepsilon)^2`
  for :math:`\varepsilon\sim\mathcal N(0,1)` by Gauss–Hermite quadrature (equation :eq:`gau-moments`).
* :func:`magnitude_theory` — Su's estimates and the corrected ones (equations :eq:`gau-diag`,
  :eq:`gau-rowsum`, :eq:`gau-rms-su`, :eq:`gau-rms`); :func:`magnitude_monte_carlo` — the same quantities
  measured on random inputs and weights.
* :class:`ScaleOffset`, :class:`GAU`, :class:`GAUBlock`, :class:`MultiHeadAttention`,
  :class:`StdBlock`, :class:`SequenceModel` — the layers; :func:`init_weights` (Xavier or LeCun,
  zero biases, optional DeepNorm down-scaling), :func:`residual_ratios` and :func:`first_step_change`
  (how far one Adam step moves the last hidden states: the depth estimate).
* :func:`reversal_batch`, :func:`reversal_loss`, :func:`reversal_accuracy`,
  :func:`train_reversal` — the trainability experiment; :func:`reversal_arm` — one arm of it
  (build a stack from a seed and train it), shared by the chapter and its full runs;
  :func:`steps_to_threshold` — how many steps a run needs to bring its running-mean loss under
  a threshold (the speed measure of the experiment).

Conventions: sequences are ``(B, n, d)`` tensors; ``mask`` is a boolean ``(B, n)`` tensor that is
``True`` on *valid* tokens (the opposite of PyTorch's ``key_padding_mask``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.utils import check_int, check_positive, check_tensor, make_generator, require_generator, seed_generator

__all__ = [
    "swish_moments",
    "magnitude_theory",
    "magnitude_monte_carlo",
    "ScaleOffset",
    "GAU",
    "GAUBlock",
    "MultiHeadAttention",
    "StdBlock",
    "SequenceModel",
    "init_weights",
    "count_parameters",
    "residual_ratios",
    "first_step_change",
    "reversal_batch",
    "reversal_loss",
    "reversal_accuracy",
    "train_reversal",
    "reversal_arm",
    "steps_to_threshold",
]


# ============================================================================ closed forms
def swish_moments(gain: float = 1.0, nodes: int = 200) -> tuple[float, float]:
    r"""Moments of Swish/SiLU :math:`\phi(x)=x\,\sigma(x)` under :math:`\varepsilon\sim\mathcal N(0,1)`
    (equation :eq:`gau-moments`): returns :math:`(\mu,\nu^2)=(\mathbb E\phi(\lambda\varepsilon),\mathbb E\phi(\lambda\varepsilon)^2)`
    with :math:`\lambda` = ``gain`` (1 for the standard analysis).

    Gauss–Hermite quadrature (probabilists' weights) with ``nodes`` nodes; :math:`\phi` is smooth
    and grows linearly, so 200 nodes are exact to float64 round-off (about 0.2066 and 0.3558).
    """
    gain = check_positive("gain", gain)
    nodes = check_int("nodes", nodes, minimum=2)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2 * math.pi)
    x = gain * x
    phi = x / (1.0 + np.exp(-x))
    return float(np.sum(w * phi)), float(np.sum(w * phi**2))


def magnitude_theory(n: int, s: int, gain: float = 1.0) -> dict[str, float]:
    r"""Closed-form sizes of a freshly initialised GAU (LeCun init times ``gain`` = :math:`\lambda`,
    unit-variance input). With :math:`\lambda\ne1`, :math:`\mu,\nu^2` are the moments of
    :math:`\phi(\lambda\varepsilon)` and every rms carries an extra factor :math:`\lambda` from :math:`W_o`.

    Returns a dict with

    * ``diag`` — :math:`A_{ii}\approx s\nu^4/n` (equation :eq:`gau-diag`);
    * ``offdiag_entry`` — :math:`A_{ij}\approx s\mu^4/n`, :math:`i\ne j`;
    * ``rowsum`` — :math:`\sum_{j\ne i}A_{ij}\approx s\mu^4+\nu^4-\mu^4` (equation :eq:`gau-rowsum`),
      which does not depend on ``n``;
    * ``rms_su`` — Su's estimate :math:`s\nu^6/n` of rms(O), which keeps only the diagonal
      (equation :eq:`gau-rms-su`);
    * ``rms`` — the corrected estimate :math:`\nu\sqrt{D^2\nu^2+2DR\mu^2+R^2\mu^2}` with
      :math:`D` = ``diag`` and :math:`R` = ``rowsum`` (equation :eq:`gau-rms`);
    * ``rms_limit`` — its large-``n`` limit :math:`\nu\mu R`.
    """
    n = check_int("n", n, minimum=2)
    s = check_int("s", s, minimum=1)
    lam = check_positive("gain", gain)
    mu, nu2 = swish_moments(lam)
    diag = s * nu2**2 / n
    rowsum = s * mu**4 + nu2**2 - mu**4
    nu = math.sqrt(nu2)
    rms = nu * math.sqrt(diag**2 * nu2 + 2 * diag * rowsum * mu**2 + rowsum**2 * mu**2)
    return {
        "mu": mu,
        "nu2": nu2,
        "diag": diag,
        "offdiag_entry": s * mu**4 / n,
        "rowsum": rowsum,
        "rms_su": lam * s * nu2**3 / n,
        "rms": lam * rms,
        "rms_limit": lam * nu * mu * rowsum,
    }


# ============================================================================ layers
class ScaleOffset(nn.Module):
    r"""Per-dimension affine map :math:`z\mapsto\gamma\odot z+\beta` (the :math:`\mathcal Q,\mathcal K`
    of equation :eq:`gau-def`); the identity at initialisation (:math:`\gamma=1,\beta=0`)."""

    def __init__(self, dim: int):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(..., dim)`` -> ``(..., dim)``."""
        check_tensor("z", z)
        if z.ndim < 1 or z.shape[-1] != self.gamma.shape[0] or z.numel() == 0:
            raise ValueError(f"z must be a non-empty (..., {self.gamma.shape[0]}) tensor, got {tuple(z.shape)}")
        return z * self.gamma + self.beta


def _check_model(model, cls: type = nn.Module, name: str = "model") -> None:
    if not isinstance(model, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(model).__name__}")


def _check_seq(x: torch.Tensor, d: int, mask: torch.Tensor | None, causal: bool = False) -> torch.Tensor | None:
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    check_tensor("x", x, ndim=3)
    if x.shape[-1] != d or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (B, n, {d}), got {tuple(x.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a boolean torch.Tensor (True on valid tokens)")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if not mask.any(-1).all():
            raise ValueError("mask must keep at least one valid token per sequence")
    return mask


class GAU(nn.Module):
    r"""Gated attention unit (equation :eq:`gau-def`), one head:

    .. math:: O=(U\odot AV)W_o,\quad A=\tfrac{1}{ns}\mathrm{relu}^2(\mathcal Q(Z)\mathcal K(Z)^\top),

    .. math:: U=\phi(XW_u),\ V=\phi(XW_v),\ Z=\phi(XW_z),

    with :math:`\phi` = SiLU, ``e`` the width of U and V and ``s`` the width of Z (head size).
    ``forward(x (B, n, d), mask (B, n) | None, causal) -> (B, n, d)``. With a mask or a causal
    pattern, ``n`` in the normaliser is the number of keys a query may see in the mask (the
    sequence's valid length), and masked keys get weight 0.
    """

    def __init__(self, d: int, e: int | None = None, s: int = 128):
        super().__init__()
        self.d = check_int("d", d, minimum=1)
        self.e = check_int("e", 2 * d if e is None else e, minimum=1)
        self.s = check_int("s", s, minimum=1)
        # [W_u | W_v] fused, W_z separate: Xavier's variance 2/(fan_in + fan_out) depends on
        # how matrices are fused (one (d, 2e+s) matrix would start ~25x smaller at the output).
        self.uv = nn.Linear(self.d, 2 * self.e)
        self.z = nn.Linear(self.d, self.s)
        self.q = ScaleOffset(self.s)
        self.k = ScaleOffset(self.s)
        self.out = nn.Linear(self.e, self.d)  # W_o

    def parts(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(U (B,n,e), V (B,n,e), A (B,n,n))`` of equation :eq:`gau-def`."""
        mask = _check_seq(x, self.d, mask, causal)
        u, v = F.silu(self.uv(x)).chunk(2, dim=-1)
        z = F.silu(self.z(x))
        logits = self.q(z) @ self.k(z).transpose(-1, -2)
        a = F.relu(logits).square()
        n = x.shape[1]
        if mask is not None:
            a = a * mask[:, None, :].to(a.dtype)
            n_valid = mask.sum(-1).to(a.dtype)[:, None, None]
        else:
            n_valid = torch.full((1, 1, 1), float(n), dtype=a.dtype, device=a.device)
        if causal:
            a = a.tril()
        return u, v, a / (n_valid * self.s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        u, v, a = self.parts(x, mask, causal)
        return self.out(u * (a @ v))


class MultiHeadAttention(nn.Module):
    """Standard softmax multi-head attention with a fused ``qkv`` projection, ``(B, n, d) -> (B, n, d)``."""

    def __init__(self, d: int, heads: int = 4):
        super().__init__()
        self.d = check_int("d", d, minimum=1)
        self.heads = check_int("heads", heads, minimum=1)
        if d % heads:
            raise ValueError(f"d={d} must be divisible by heads={heads}")
        self.qkv = nn.Linear(d, 3 * d)  # [W_q | W_k | W_v]
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        mask = _check_seq(x, self.d, mask, causal)
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        allowed = torch.ones(n, n, dtype=torch.bool, device=x.device)
        if causal:
            allowed = allowed.tril()
        allowed = allowed.expand(b, 1, n, n)
        if mask is not None:
            allowed = allowed & mask[:, None, None, :]
            if not allowed.any(-1).all():
                raise ValueError("every query must see a valid key: with causal=True the first token must be valid")
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class GAUBlock(nn.Module):
    r"""Post-LN GAU block :math:`x\leftarrow\mathrm{LN}(\alpha x+\mathrm{GAU}(x))` (equation :eq:`gau-postln`;
    ``alpha > 1`` is DeepNorm, equation :eq:`gau-deepnorm`)."""

    def __init__(self, d: int, e: int | None = None, s: int = 128, alpha: float = 1.0):
        super().__init__()
        self.gau = GAU(d, e, s)
        self.norm = nn.LayerNorm(d)
        self.alpha = check_positive("alpha", alpha)

    def forward(self, x, mask=None, causal=False, record: list | None = None):
        f = self.gau(x, mask, causal)
        if record is not None:
            record.append((f.norm() / x.norm()).item())
        return self.norm(self.alpha * x + f)


class StdBlock(nn.Module):
    r"""Standard Post-LN Transformer block: :math:`x\leftarrow\mathrm{LN}(\alpha x+\mathrm{MHA}(x))`, then
    :math:`x\leftarrow\mathrm{LN}(\alpha x+\mathrm{FFN}(x))` with a ReLU FFN of width ``ffn_mult * d``."""

    def __init__(self, d: int, heads: int = 4, ffn_mult: int = 4, alpha: float = 1.0):
        super().__init__()
        ffn_mult = check_int("ffn_mult", ffn_mult, minimum=1)
        self.attn = MultiHeadAttention(d, heads)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.ReLU(), nn.Linear(ffn_mult * d, d))
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.alpha = check_positive("alpha", alpha)

    def forward(self, x, mask=None, causal=False, record: list | None = None):
        f = self.attn(x, mask, causal)
        if record is not None:
            record.append((f.norm() / x.norm()).item())
        x = self.norm1(self.alpha * x + f)
        f = self.ffn(x)
        if record is not None:
            record.append((f.norm() / x.norm()).item())
        return self.norm2(self.alpha * x + f)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    _check_model(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def init_weights(
    model: nn.Module,
    generator: torch.Generator | int | None = 0,
    scheme: str = "xavier",
    gain: float = 1.0,
    deepnorm_beta: float = 1.0,
) -> nn.Module:
    r"""Re-initialise every ``nn.Linear`` of ``model`` in place; zero every bias.

    ``scheme="xavier"``: uniform with variance :math:`2/(\text{fan\_in}+\text{fan\_out})` (the
    experiment's setting); ``scheme="lecun"``: normal with variance :math:`1/\text{fan\_in}` (the
    assumption of the magnitude analysis). All weights are multiplied by ``gain`` (the
    :math:`\lambda` of the "crazy scale" remark). ``deepnorm_beta`` multiplies the value-path
    weights (equation :eq:`gau-deepnorm`): :math:`W_v,W_o` and both FFN matrices of a :class:`StdBlock`;
    :math:`W_u,W_v,W_o` of a :class:`GAU`. Returns ``model``.
    """
    _check_model(model)
    if scheme not in ("xavier", "lecun"):
        raise ValueError(f"scheme must be 'xavier' or 'lecun', got {scheme!r}")
    gain = check_positive("gain", gain)
    deepnorm_beta = check_positive("deepnorm_beta", deepnorm_beta)
    g = make_generator(generator)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight, gain=gain, generator=g)
            else:
                nn.init.normal_(m.weight, 0.0, gain / math.sqrt(m.in_features), generator=g)
            if m.bias is not None:
                m.bias.zero_()
    if deepnorm_beta != 1.0:
        for m in model.modules():
            if isinstance(m, MultiHeadAttention):
                m.qkv.weight[2 * m.d :].mul_(deepnorm_beta)
                m.out.weight.mul_(deepnorm_beta)
            elif isinstance(m, StdBlock):
                cast(nn.Linear, m.ffn[0]).weight.mul_(deepnorm_beta)
                cast(nn.Linear, m.ffn[2]).weight.mul_(deepnorm_beta)
            elif isinstance(m, GAU):
                m.uv.weight.mul_(deepnorm_beta)
                m.out.weight.mul_(deepnorm_beta)
    return model


class SequenceModel(nn.Module):
    r"""Token classifier: embedding + learned positions :math:`\mathcal N(0,1)` + LN, then ``layers``
    Post-LN blocks (``kind="gau"`` or ``"std"``), then a linear read-out ``(B, n) -> (B, n, vocab)``.

    Weights are built from ``seed`` only: Xavier-uniform on every Linear, zero biases, embeddings
    :math:`\mathcal N(0,1)`. ``deepnorm=True`` sets :math:`\alpha=\sqrt{M}` and
    :math:`\beta=1/\sqrt{M}` with :math:`M` the number of residual sublayers (the Adam row of
    equation :eq:`gau-deepnorm`).
    """

    def __init__(
        self,
        vocab: int = 16,
        length: int = 32,
        d: int = 64,
        layers: int = 12,
        kind: str = "gau",
        *,
        heads: int = 4,
        s: int = 32,
        e: int | None = None,
        deepnorm: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.vocab = check_int("vocab", vocab, minimum=2)
        self.length = check_int("length", length, minimum=1)
        d = check_int("d", d, minimum=1)
        layers = check_int("layers", layers, minimum=1)
        check_int("heads", heads, minimum=1)
        if kind not in ("gau", "std"):
            raise ValueError(f"kind must be 'gau' or 'std', got {kind!r}")
        self.kind = kind
        sublayers = layers if kind == "gau" else 2 * layers
        alpha = math.sqrt(sublayers) if deepnorm else 1.0
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.empty(length, d))
        self.norm = nn.LayerNorm(d)
        if kind == "gau":
            self.blocks = nn.ModuleList(GAUBlock(d, e, s, alpha) for _ in range(layers))
        else:
            self.blocks = nn.ModuleList(StdBlock(d, heads, 4, alpha) for _ in range(layers))
        self.head = nn.Linear(d, vocab)
        g = seed_generator(seed)  # weights from the seed only: None would not say which
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, generator=g)
            nn.init.normal_(self.pos, generator=g)
        init_weights(self, g, "xavier", deepnorm_beta=1.0 / alpha)

    def forward(self, tokens: torch.Tensor, mask=None, causal: bool = False, record: list | None = None):
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.ndim != 2:
            raise TypeError("tokens must be a (B, n) torch.long tensor")
        if tokens.numel() == 0:
            raise ValueError(f"tokens must be non-empty, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.length:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds the position table ({self.length})")
        if tokens.min() < 0 or tokens.max() >= self.vocab:
            raise ValueError(f"tokens must lie in [0, {self.vocab})")
        x = self.norm(self.embed(tokens) + self.pos[: tokens.shape[1]])
        for blk in self.blocks:
            x = blk(x, mask, causal, record)
        return self.head(x)


@torch.no_grad()
def residual_ratios(model: SequenceModel, tokens: torch.Tensor) -> torch.Tensor:
    r"""Per-sublayer :math:`\|F(x)\|/\|x\|` (Frobenius norms over the batch) for one forward pass;
    shape ``(layers,)`` for GAU, ``(2 * layers,)`` for std (attention, FFN, attention, …)."""
    _check_model(model, SequenceModel)
    rec: list[float] = []
    model(tokens, record=rec)
    return torch.tensor(rec, dtype=torch.float64)


def first_step_change(model: SequenceModel, tokens: torch.Tensor, lr: float) -> float:
    r"""Relative change :math:`\|h_1-h_0\|/\|h_0\|` of the last hidden states (the input of the
    read-out, over the whole batch) caused by one Adam step of learning rate ``lr`` on
    :func:`reversal_loss` for ``tokens`` ``(B, n)`` — the quantity the depth estimate of equation
    :eq:`gau-depth` bounds. Adam's first step moves every weight by ``lr`` times the sign of its
    gradient (up to Adam's ``eps``). Works on a copy: ``model`` is left unchanged."""
    import copy

    _check_model(model, SequenceModel)
    lr = check_positive("lr", lr)
    net = copy.deepcopy(model).train()
    hidden: list[torch.Tensor] = []
    hook = net.head.register_forward_hook(lambda mod, inp, out: hidden.append(inp[0].detach()))
    try:
        with torch.no_grad():
            net(tokens)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        reversal_loss(net, tokens).backward()
        opt.step()
        with torch.no_grad():
            net(tokens)
    finally:
        hook.remove()
    h0, _, h1 = hidden
    return ((h1 - h0).norm() / h0.norm()).item()


# ============================================================================ Monte Carlo twin
@torch.no_grad()
def magnitude_monte_carlo(
    n: int,
    d: int = 768,
    e: int | None = None,
    s: int = 128,
    *,
    reps: int = 3,
    gain: float = 1.0,
    generator: torch.Generator | int | None = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    r"""Measure, on :math:`X\sim\mathcal N(0,1)^{n\times d}` and a LeCun-initialised :class:`GAU`
    (weights times ``gain``), the quantities of :func:`magnitude_theory`, averaged over ``reps``
    independent draws of X and weights.

    Returns ``rms`` (rms of O), ``rms_diag`` (rms of O with A replaced by its diagonal), ``diag``
    (mean :math:`A_{ii}`), ``rowsum`` (mean :math:`\sum_{j\ne i}A_{ij}`), ``mu``/``nu2``
    (empirical moments of the SiLU pre-activations' images) and ``*_se`` standard errors of
    the means over the reps (``nan``-free: 0 when ``reps == 1``).
    """
    n = check_int("n", n, minimum=2)
    reps = check_int("reps", reps, minimum=1)
    g = make_generator(generator)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    layer = GAU(d, e, s).to(dtype)
    keys = ("rms", "rms_diag", "diag", "rowsum", "mu", "nu2")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(reps):
        init_weights(layer, g, "lecun", gain=gain)
        x = torch.randn(1, n, layer.d, generator=g, dtype=dtype)
        u, v, a = layer.parts(x)
        diag = torch.diagonal(a, dim1=-2, dim2=-1)
        o_full = layer.out(u * (a @ v))
        o_diag = layer.out(u * (diag[..., None] * v))
        out["rms"].append(o_full.square().mean().sqrt().item())
        out["rms_diag"].append(o_diag.square().mean().sqrt().item())
        out["diag"].append(diag.mean().item())
        out["rowsum"].append((a.sum(-1) - diag).mean().item())
        out["mu"].append(v.mean().item())
        out["nu2"].append(v.square().mean().item())
    res: dict[str, float] = {}
    for k, vals in out.items():
        t = torch.tensor(vals, dtype=torch.float64)
        res[k] = t.mean().item()
        res[k + "_se"] = (t.std() / math.sqrt(reps)).item() if reps > 1 else 0.0
    return res


# ============================================================================ the task
def reversal_batch(
    batch_size: int, generator: torch.Generator | int | None, length: int = 32, vocab: int = 16
) -> torch.Tensor:
    """Random token sequences ``(batch_size, length)`` with tokens uniform in ``1 … vocab-1``
    (0 is reserved); the target of the reversal task is ``batch.flip(1)``. ``generator``: a
    ``torch.Generator``, an int seed, or ``None`` (torch's global generator, as in torch)."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    length = check_int("length", length, minimum=1)
    vocab = check_int("vocab", vocab, minimum=3)
    return torch.randint(1, vocab, (batch_size, length), generator=require_generator(generator))


def reversal_loss(model: nn.Module, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Mean per-position cross-entropy of predicting ``batch.flip(1)``; chance level is
    :math:`\ln(\text{vocab}-1)`. Signature fits :func:`companion.core.train.fit`."""
    _check_model(model)
    logits = model(batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.flip(1).reshape(-1))


@torch.no_grad()
def reversal_accuracy(model: SequenceModel, n_seqs: int = 256, seed: int = 12345) -> float:
    """Per-token accuracy on ``n_seqs`` fresh sequences drawn with ``seed`` (``model``: an
    ``nn.Module`` with ``length`` and ``vocab`` attributes, like :class:`SequenceModel`)."""
    _check_model(model)
    if not all(isinstance(getattr(model, a, None), int) for a in ("length", "vocab")):
        raise TypeError("model must have int attributes length and vocab (like SequenceModel)")
    n_seqs = check_int("n_seqs", n_seqs, minimum=1)
    was_training = model.training
    model.eval()
    x = reversal_batch(n_seqs, seed_generator(seed), model.length, model.vocab)
    acc = (model(x).argmax(-1) == x.flip(1)).double().mean().item()
    model.train(was_training)
    return acc


def train_reversal(
    model: SequenceModel,
    steps: int = 300,
    *,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 0,
    seed: int = 1,
    progress: bool = True,
    desc: str | None = None,
) -> dict[str, Any]:
    """Train on the reversal task with Adam at constant ``lr`` (linear ``warmup`` steps if > 0),
    no gradient clipping, through :func:`companion.core.train.fit`. Returns a dict with ``losses``
    (list), ``final_loss`` (mean of the last 20 steps), ``accuracy`` and ``seconds``."""
    import time

    from ..core.train import fit

    steps = check_int("steps", steps, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    length, vocab = model.length, model.vocab
    sampler: Callable[[int, torch.Generator], torch.Tensor] = lambda b, g: reversal_batch(b, g, length, vocab)
    t0 = time.perf_counter()
    res = fit(
        model, reversal_loss, sampler, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        grad_clip=None, warmup=warmup, cosine=False, ema_decay=0.0, progress=progress,
        desc=desc or f"{model.kind}-{len(model.blocks)}",
    )
    seconds = time.perf_counter() - t0
    tail = res.losses[-20:]
    return {
        "losses": res.losses,
        "final_loss": sum(tail) / len(tail),
        "accuracy": reversal_accuracy(model),
        "seconds": seconds,
    }


def reversal_arm(
    kind: str,
    layers: int,
    *,
    length: int,
    lr: float,
    steps: int,
    warmup: int = 0,
    deepnorm: bool = False,
    seed: int = 0,
    d: int = 64,
    s: int = 32,
    vocab: int = 16,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """One arm of the chapter's experiment: a :class:`SequenceModel` (``kind``, ``layers``, Post-LN,
    Xavier, optional DeepNorm) built from model seed ``seed`` and trained by :func:`train_reversal`
    with data seed ``seed + 1``. Returns the dict of :func:`train_reversal` (``losses``,
    ``final_loss``, ``accuracy``, ``seconds``)."""
    seed = check_int("seed", seed, minimum=0)
    if not isinstance(deepnorm, bool):
        raise TypeError(f"deepnorm must be a bool, got {type(deepnorm).__name__}")
    model = SequenceModel(vocab=vocab, length=length, d=d, layers=layers, kind=kind, s=s,
                          deepnorm=deepnorm, seed=seed)
    name = f"{kind}-{layers}" + (f", warmup {warmup}" if warmup else "") + (", DeepNorm" if deepnorm else "")
    return train_reversal(model, steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed + 1,
                          progress=progress, desc=f"{name}, seed {seed}")


def steps_to_threshold(losses, threshold: float, window: int = 20) -> int | None:
    r"""Number of training steps after which the mean of the last ``window`` losses first falls
    below ``threshold``: the smallest :math:`t\ge` ``window`` with
    :math:`\frac1w\sum_{k=t-w}^{t-1}\ell_k<` ``threshold``, or ``None`` if the run never gets there.

    ``losses`` is a loss history (one value per step, as in :func:`train_reversal`). On the
    reversal task every batch is fresh, so each training loss is an unbiased draw of the
    population loss and the running mean is an honest estimate of it.
    """
    threshold = check_positive("threshold", threshold)
    window = check_int("window", window, minimum=1)
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"losses must be a 1-D sequence, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("losses contain NaN or infinite values")
    if len(x) < window:
        return None
    c = np.concatenate([[0.0], np.cumsum(x)])
    hits = np.nonzero((c[window:] - c[:-window]) / window < threshold)[0]
    return int(hits[0]) + window if len(hits) else None
