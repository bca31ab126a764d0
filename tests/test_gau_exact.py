"""Exact checks of companion.gau that mutation testing showed were missing: the softmax
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
