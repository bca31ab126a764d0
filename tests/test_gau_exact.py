"""Exact checks of companion.sequence.gau that mutation testing showed were missing: the softmax
multi-head attention baseline against its definition written out from its weights, and the
closed forms of magnitude_theory against their limits."""

from __future__ import annotations

import math

import torch

from companion import gau


def _mha_by_hand(m: gau.MultiHeadAttention, x: torch.Tensor, mask=None, causal=False) -> torch.Tensor:
    b, n, d = x.shape
    h, dh = m.heads, d // m.heads
    W, c = m.qkv.weight, m.qkv.bias
    q, k, v = (x @ W[i * d:(i + 1) * d].T + c[i * d:(i + 1) * d] for i in range(3))
    out = torch.zeros(b, n, d, dtype=x.dtype)
    for bi in range(b):
        for hi in range(h):
            sl = slice(hi * dh, (hi + 1) * dh)
            for i in range(n):
                keys = [j for j in range(n) if (not causal or j <= i) and (mask is None or bool(mask[bi, j]))]
                logits = torch.stack([q[bi, i, sl] @ k[bi, j, sl] for j in keys]) / math.sqrt(dh)
                w = torch.softmax(logits, 0)
                out[bi, i, sl] = sum(wj * v[bi, j, sl] for wj, j in zip(w, keys, strict=True))
    return out @ m.out.weight.T + m.out.bias


def test_multihead_attention_matches_its_definition():
    torch.manual_seed(0)
    m = gau.MultiHeadAttention(8, heads=2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m(x), _mha_by_hand(m, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(m(x, causal=True), _mha_by_hand(m, x, causal=True), rtol=0, atol=1e-12)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    torch.testing.assert_close(m(x, mask), _mha_by_hand(m, x, mask), rtol=0, atol=1e-12)


def test_magnitude_theory_limits_and_relations():
    """rms -> nu mu R as n -> infinity (the diagonal term vanishes); rms_su = lambda s nu^6 / n;
    diag and offdiag_entry scale as 1/n, rowsum = n * offdiag + nu^4 - mu^4 (the diagonal's
    off-diagonal complement), and every rms carries the gain once."""
    mu, nu2 = gau.swish_moments()
    for n, s in [(64, 16), (512, 128), (4096, 128)]:
        th = gau.magnitude_theory(n, s)
        assert th["mu"] == mu and th["nu2"] == nu2
        assert abs(th["diag"] - s * nu2**2 / n) < 1e-15
        assert abs(th["offdiag_entry"] * n - s * mu**4) < 1e-12
        assert abs(th["rowsum"] - (n * th["offdiag_entry"] + nu2**2 - mu**4)) < 1e-12
        assert abs(th["rms_su"] - s * nu2**3 / n) < 1e-15
        assert abs(th["rms_limit"] - math.sqrt(nu2) * mu * th["rowsum"]) < 1e-15
        # exact expansion: rms^2 = nu^2 (D^2 nu^2 + 2 D R mu^2 + R^2 mu^2)
        D, R = th["diag"], th["rowsum"]
        assert abs(th["rms"] ** 2 - nu2 * (D**2 * nu2 + 2 * D * R * mu**2 + R**2 * mu**2)) < 1e-12 * th["rms"] ** 2
    big = gau.magnitude_theory(10**9, 128)
    assert abs(big["rms"] / big["rms_limit"] - 1) < 1e-5
    # the gain: moments of phi(lambda eps), and one extra factor lambda on every rms
    mu2, nu22 = gau.swish_moments(0.5)
    th2 = gau.magnitude_theory(256, 64, gain=0.5)
    assert th2["mu"] == mu2 and th2["nu2"] == nu22
    assert abs(th2["rms_su"] - 0.5 * 64 * nu22**3 / 256) < 1e-15
    assert abs(th2["rms_limit"] - 0.5 * math.sqrt(nu22) * mu2 * th2["rowsum"]) < 1e-15
    assert gau.magnitude_theory(256, 64) == gau.magnitude_theory(256, 64, gain=1.0)


def test_documented_defaults_and_smallest_sizes():
    """MultiHeadAttention has 4 heads by default; SequenceModel's GAU uses s = 32 by default; one
    head is a valid size; seed 0 is a valid seed of reversal_arm (validation reaches the next argument)."""
    import pytest

    assert gau.MultiHeadAttention(8).heads == 4
    m = gau.SequenceModel(vocab=16, length=4, d=8, layers=1)
    assert m.blocks[0].gau.s == 32
    gau.SequenceModel(vocab=16, length=4, d=8, layers=1, kind="std", heads=1)   # one head is valid
    assert gau.MultiHeadAttention(8, heads=1)(torch.zeros(1, 3, 8)).shape == (1, 3, 8)
    with pytest.raises(TypeError, match="deepnorm"):
        gau.reversal_arm("gau", 1, length=4, lr=1e-3, steps=1, seed=0, deepnorm="yes")


def test_train_reversal_default_data_seed_is_one():
    """Without a seed, train_reversal draws its data from seed 1: the same run as seed=1."""
    import inspect

    assert inspect.signature(gau.train_reversal).parameters["seed"].default == 1
    torch.manual_seed(0)
    m1 = gau.SequenceModel(vocab=8, length=4, d=8, layers=1, seed=0)
    m2 = gau.SequenceModel(vocab=8, length=4, d=8, layers=1, seed=0)
    r1 = gau.train_reversal(m1, steps=3, batch_size=4, progress=False)
    r2 = gau.train_reversal(m2, steps=3, batch_size=4, seed=1, progress=False)
    assert r1["losses"] == r2["losses"]
