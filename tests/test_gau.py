"""Tests of companion.sequence.gau: the GAU's initial-size analysis (E2.1), layers, masking, init, task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from companion import gau


# ----------------------------------------------------------------------------- moments
def test_swish_moments_match_scipy_quadrature():
    mu, nu2 = gau.swish_moments()
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    phi = lambda x: x / (1 + math.exp(-x))
    mu_q = integrate.quad(lambda x: phi(x) * pdf(x), -40, 40, epsabs=1e-13)[0]
    nu2_q = integrate.quad(lambda x: phi(x) ** 2 * pdf(x), -40, 40, epsabs=1e-13)[0]
    # two quadratures (Gauss-Hermite vs adaptive) agree to round-off
    assert abs(mu - mu_q) < 1e-10 and abs(nu2 - nu2_q) < 1e-10
    assert abs(mu - 0.2066) < 1e-3 and abs(nu2 - 0.3558) < 1e-3  # the values quoted in the book


def test_swish_moments_match_monte_carlo():
    mu, nu2 = gau.swish_moments()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2_000_000, generator=g, dtype=torch.float64)
    phi = torch.nn.functional.silu(x)
    n = x.numel()
    for est, sample in ((mu, phi), (nu2, phi**2)):
        se = sample.std().item() / math.sqrt(n)
        # 4 standard errors: fails by chance with probability ~6e-5
        assert abs(sample.mean().item() - est) < 4 * se


# ----------------------------------------------------------------------------- E2.1 magnitudes
@pytest.fixture(scope="module")
def mc512():
    return gau.magnitude_monte_carlo(512, reps=3, generator=0)


def test_diagonal_matches_su(mc512):
    th = gau.magnitude_theory(512, 128)
    # measured relative error over seeds 0..7 (3 reps each): +4.3 % to +7.3 %; bound 12 %
    assert abs(mc512["diag"] / th["diag"] - 1) < 0.12


def test_offdiagonal_rowsum_formula(mc512):
    th = gau.magnitude_theory(512, 128)
    # row sum s mu^4 + nu^4 - mu^4 = 0.358; measured over seeds 0..7: +0.9 % to +4.8 %; bound 15 %
    assert abs(mc512["rowsum"] / th["rowsum"] - 1) < 0.15
    # and it exceeds the diagonal by an order of magnitude at n = 512 (the correction to Su)
    assert mc512["rowsum"] > 5 * mc512["diag"]


def test_rowsum_does_not_depend_on_n():
    # independent of n: measured ratios rowsum(n=64)/rowsum(n=256) over seeds 0..5: 0.92-1.12
    a = gau.magnitude_monte_carlo(64, d=256, reps=4, generator=1)["rowsum"]
    b = gau.magnitude_monte_carlo(256, d=256, reps=4, generator=2)["rowsum"]
    assert abs(a / b - 1) < 0.2  # a 1/n law would give a ratio of 4


def test_rms_bounds_and_corrected_estimate(mc512):
    th = gau.magnitude_theory(512, 128)
    # the full output is well below the input (rms 1) and well above Su's 0.011
    assert 0.02 < mc512["rms"] < 0.1
    assert mc512["rms"] > 3 * th["rms_su"]
    # keeping only the diagonal reproduces Su's estimate: measured +16 % to +20 % over seeds 0..7
    assert abs(mc512["rms_diag"] / th["rms_su"] - 1) < 0.3
    # the corrected estimate (eq. gau-rms) is within 20 %: measured -14 % to -11 % over seeds 0..7
    assert abs(th["rms"] / mc512["rms"] - 1) < 0.2


def test_output_levels_off_with_n():
    lo = gau.magnitude_monte_carlo(128, d=384, reps=2, generator=3)["rms"]
    hi = gau.magnitude_monte_carlo(1024, d=384, reps=2, generator=4)["rms"]
    # Su's 1/n law predicts a ratio of 1/8; measured 0.58-0.68 over seeds 0..5; corrected theory 0.634
    th = gau.magnitude_theory(1024, 128)["rms"] / gau.magnitude_theory(128, 128)["rms"]
    assert hi / lo > 0.5
    assert abs(hi / lo - th) < 0.1


def test_crazy_scale_shrinks_faster_than_lambda7():
    r1 = gau.magnitude_monte_carlo(256, d=384, reps=2, generator=5)["rms"]
    r5 = gau.magnitude_monte_carlo(256, d=384, reps=2, generator=5, gain=0.5)["rms"]
    # measured ratio 2.1e-3 to 2.2e-3 over seeds 0..5, below lambda^7 = 7.8e-3
    assert r5 / r1 < 1e-2
    # eq. gau-rms with the moments of phi(lambda * eps) predicts the shrink factor:
    # measured (MC ratio)/(theory ratio) over seeds 0..5: 0.99-1.03; bound 10 %
    th = gau.magnitude_theory(256, 128, gain=0.5)["rms"] / gau.magnitude_theory(256, 128)["rms"]
    assert abs((r5 / r1) / th - 1) < 0.1


def test_theory_validation():
    with pytest.raises(ValueError, match="n"):
        gau.magnitude_theory(1, 128)
    with pytest.raises(TypeError, match="s"):
        gau.magnitude_theory(10, 1.5)
    with pytest.raises(ValueError, match="gain"):
        gau.magnitude_theory(10, 4, gain=0.0)
    with pytest.raises(ValueError, match="nodes"):
        gau.swish_moments(nodes=1)
    with pytest.raises(ValueError, match="reps"):
        gau.magnitude_monte_carlo(10, d=8, reps=0)


# ----------------------------------------------------------------------------- layers
def test_gau_matches_definition_from_weights():
    torch.manual_seed(0)
    layer = gau.GAU(8, 12, 5).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.5)  # non-trivial gamma/beta and biases
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    w_uv, b_uv = layer.uv.weight.detach().numpy(), layer.uv.bias.detach().numpy()
    w_z, b_z = layer.z.weight.detach().numpy(), layer.z.bias.detach().numpy()
    w_o, b_o = layer.out.weight.detach().numpy(), layer.out.bias.detach().numpy()
    gq, bq = layer.q.gamma.detach().numpy(), layer.q.beta.detach().numpy()
    gk, bk = layer.k.gamma.detach().numpy(), layer.k.beta.detach().numpy()
    silu = lambda t: t / (1 + np.exp(-t))
    for b in range(2):
        xb = x[b].numpy()
        uv = silu(xb @ w_uv.T + b_uv)
        u, v = uv[:, :12], uv[:, 12:]
        z = silu(xb @ w_z.T + b_z)
        a = np.maximum((z * gq + bq) @ (z * gk + bk).T, 0) ** 2 / (7 * 5)
        o = (u * (a @ v)) @ w_o.T + b_o
        np.testing.assert_allclose(layer(x)[b].detach().numpy(), o, rtol=1e-10, atol=1e-12)


def test_shapes_and_dtype():
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    layer = gau.GAU(16, s=8).double()
    u, v, a = layer.parts(x)
    assert u.shape == v.shape == (3, 10, 32) and a.shape == (3, 10, 10)
    assert layer(x).shape == x.shape and layer(x).dtype == torch.float64
    mha = gau.MultiHeadAttention(16, 4).double()
    assert mha(x).shape == x.shape
    for blk in (gau.GAUBlock(16, s=8), gau.StdBlock(16, heads=4)):
        assert blk.double()(x).shape == x.shape
    model = gau.SequenceModel(vocab=7, length=12, d=16, layers=2, kind="std")
    assert model(torch.randint(0, 7, (3, 10))).shape == (3, 10, 7)


@pytest.mark.parametrize("cls", ["gau", "mha"])
def test_padding_mask_equals_truncation(cls):
    torch.manual_seed(1)
    layer = (gau.GAU(16, s=8) if cls == "gau" else gau.MultiHeadAttention(16, 4)).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :6] = True
    mask[1, :9] = True
    y = layer(x, mask)
    # a padded sequence must give the outputs of the same sequence without padding
    torch.testing.assert_close(y[0, :6], layer(x[:1, :6])[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y[1], layer(x[1:])[0], rtol=1e-12, atol=1e-12)
    # padded tokens have no influence on valid ones
    x2 = x.clone()
    x2[0, 6:] = 100.0
    torch.testing.assert_close(layer(x2, mask)[0, :6], y[0, :6], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", ["gau", "mha"])
def test_causal_ignores_the_future(cls):
    torch.manual_seed(2)
    layer = (gau.GAU(16, s=8) if cls == "gau" else gau.MultiHeadAttention(16, 4)).double()
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 5:] = torch.randn(3, 16, dtype=torch.float64)
    y, y2 = layer(x, causal=True), layer(x2, causal=True)
    torch.testing.assert_close(y[0, :5], y2[0, :5], rtol=1e-12, atol=1e-12)
    assert (y[0, 5:] - y2[0, 5:]).abs().max() > 1e-3  # the future does change later outputs
    if cls == "gau":
        a = layer.parts(x, causal=True)[2]
        assert torch.equal(a, a.tril())


def test_layer_validation():
    layer = gau.GAU(8, s=4)
    with pytest.raises(TypeError, match="x"):
        layer([[1.0]])
    with pytest.raises(ValueError, match="x"):
        layer(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"\(B, n, 8\)"):
        layer(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.full((1, 3, 8), float("nan")))
    with pytest.raises(TypeError, match="mask"):
        layer(torch.randn(1, 3, 8), torch.ones(1, 3))
    with pytest.raises(ValueError, match="mask"):
        layer(torch.randn(1, 3, 8), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one"):
        layer(torch.randn(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
    mha = gau.MultiHeadAttention(8, 2)
    left_pad = torch.tensor([[False, True, True]])
    with pytest.raises(ValueError, match="first token"):
        mha(torch.randn(1, 3, 8), left_pad, causal=True)
    assert torch.isfinite(mha(torch.randn(1, 3, 8), left_pad)).all()
    with pytest.raises(ValueError, match="divisible"):
        gau.MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="alpha"):
        gau.GAUBlock(8, alpha=0.0)
    with pytest.raises(ValueError, match="kind"):
        gau.SequenceModel(kind="rnn")
    with pytest.raises(ValueError, match="layers"):
        gau.SequenceModel(layers=0)
    model = gau.SequenceModel(vocab=5, length=4, d=8, layers=1, s=4)
    with pytest.raises(TypeError, match="tokens"):
        model(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must lie"):
        model(torch.full((2, 4), 5, dtype=torch.long))
    with pytest.raises(ValueError, match="scheme"):
        gau.init_weights(model, 0, scheme="he")
    with pytest.raises(ValueError, match="gain"):
        gau.init_weights(model, 0, gain=-1.0)


# ----------------------------------------------------------------------------- init
def _linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("kind", ["gau", "std"])
def test_xavier_init_applied(kind):
    model = gau.SequenceModel(d=64, layers=3, kind=kind, seed=0)
    z = []
    for lin in _linears(model):
        w = lin.weight.detach().double()
        fo, fi = w.shape
        var = 2.0 / (fi + fo)
        assert w.abs().max() <= math.sqrt(3 * var) + 1e-7  # uniform on [-bound, bound]
        assert torch.count_nonzero(lin.bias) == 0
        # sample variance vs 2/(fan_in+fan_out); var of a U^2 sample mean is (4/5) var^2 / N
        z.append((w.square().mean().item() - var) / (math.sqrt(0.8) * var / math.sqrt(w.numel())))
    assert max(abs(t) for t in z) < 4.5  # z-scores; measured max |z| over seeds 0..4: 2.9
    # embeddings and positions N(0, 1)
    assert abs(model.pos.detach().std().item() - 1) < 0.1
    assert abs(model.embed.weight.detach().std().item() - 1) < 0.2


def test_lecun_gain_and_deepnorm_scaling():
    model = gau.SequenceModel(d=64, layers=2, kind="std", seed=0)
    gau.init_weights(model, 3, scheme="lecun", gain=0.5)
    for lin in _linears(model):
        fo, fi = lin.weight.shape
        var = 0.25 / fi
        emp = lin.weight.detach().double().square().mean().item()
        # chi-square: relative sd of the sample variance is sqrt(2/N) <= 0.088 for N >= 256
        assert abs(emp / var - 1) < 5 * math.sqrt(2 / lin.weight.numel())
    # DeepNorm (Adam row): alpha = sqrt(2L), value-path weights times 1/alpha
    plain = gau.SequenceModel(d=32, layers=3, kind="std", seed=4)
    deep = gau.SequenceModel(d=32, layers=3, kind="std", seed=4, deepnorm=True)
    alpha = math.sqrt(6)
    assert all(b.alpha == pytest.approx(alpha) for b in deep.blocks)
    for bp, bd in zip(plain.blocks, deep.blocks, strict=True):
        torch.testing.assert_close(bd.attn.qkv.weight[:64], bp.attn.qkv.weight[:64])  # W_q, W_k kept
        torch.testing.assert_close(bd.attn.qkv.weight[64:], bp.attn.qkv.weight[64:] / alpha)
        torch.testing.assert_close(bd.attn.out.weight, bp.attn.out.weight / alpha)
        torch.testing.assert_close(bd.ffn[2].weight, bp.ffn[2].weight / alpha)
    gp = gau.SequenceModel(d=32, layers=4, kind="gau", s=8, seed=4)
    gd = gau.SequenceModel(d=32, layers=4, kind="gau", s=8, seed=4, deepnorm=True)
    for bp, bd in zip(gp.blocks, gd.blocks, strict=True):
        torch.testing.assert_close(bd.gau.uv.weight, bp.gau.uv.weight / 2.0)
        torch.testing.assert_close(bd.gau.z.weight, bp.gau.z.weight)


def test_parameter_parity():
    d, e, s = 64, 128, 32
    std_layer = 12 * d * d + 13 * d  # qkv 3d^2+3d, out d^2+d, FFN 8d^2+5d, two LNs 4d
    gau_layer = 2 * e * d + 2 * e + s * d + s + 4 * s + e * d + d + 2 * d
    shared = 16 * d + 32 * d + 2 * d + d * 16 + 16  # embedding, positions, LN, head
    std = gau.SequenceModel(d=d, layers=12, kind="std")
    g24 = gau.SequenceModel(d=d, layers=24, kind="gau", s=s)
    assert gau.count_parameters(std) == shared + 12 * std_layer
    assert gau.count_parameters(g24) == shared + 24 * gau_layer
    assert abs(gau.count_parameters(g24) / gau.count_parameters(std) - 1) < 0.1


def test_residual_ratios_at_init():
    x = gau.reversal_batch(64, torch.Generator().manual_seed(0))
    r_gau = gau.residual_ratios(gau.SequenceModel(layers=24, kind="gau", seed=0), x)
    r_std = gau.residual_ratios(gau.SequenceModel(layers=12, kind="std", seed=0), x)
    assert r_gau.shape == (24,) and r_std.shape == (24,)
    # measured means over seeds 0..4: GAU 0.092-0.105, std 0.53-0.55
    assert r_gau.mean() < 0.15 and r_std.mean() > 0.4


# ----------------------------------------------------------------------------- task
class _Oracle(torch.nn.Module):
    length, vocab = 6, 5

    def forward(self, tokens):
        return 50.0 * torch.nn.functional.one_hot(tokens.flip(1), self.vocab).double()


def test_reversal_task_targets():
    g = torch.Generator().manual_seed(0)
    x = gau.reversal_batch(500, g, length=6, vocab=5)
    assert x.shape == (500, 6) and x.dtype == torch.long
    assert x.min() == 1 and x.max() == 4  # token 0 reserved
    torch.testing.assert_close(x, gau.reversal_batch(500, torch.Generator().manual_seed(0), 6, 5))
    oracle = _Oracle()
    assert gau.reversal_accuracy(oracle, 100) == 1.0
    assert gau.reversal_loss(oracle, x).item() < 1e-6
    # a model that copies instead of reversing is right only where x_i = x_{n-1-i}
    copier = _Oracle()
    copier.forward = lambda t: 50.0 * torch.nn.functional.one_hot(t, 5).double()
    acc = gau.reversal_accuracy(copier, 2000)
    # chance of a match is 1/4 per position; se of the mean over 12000 tokens < 0.004
    assert abs(acc - 0.25) < 0.02
    # as everywhere in the package: an int seed is a generator seeded with it, None torch's global one
    assert torch.equal(gau.reversal_batch(4, 7), gau.reversal_batch(4, torch.Generator().manual_seed(7)))
    assert gau.reversal_batch(4, None).shape == (4, 32)
    with pytest.raises(TypeError, match="generator"):
        gau.reversal_batch(4, 0.5)
    with pytest.raises(ValueError, match="vocab"):
        gau.reversal_batch(4, g, vocab=2)
    with pytest.raises(ValueError, match="batch_size"):
        gau.reversal_batch(0, g)


def test_short_training_learns():
    model = gau.SequenceModel(vocab=6, length=6, d=32, layers=2, kind="gau", s=16, seed=0)
    res = gau.train_reversal(model, 120, batch_size=32, lr=3e-3, seed=1, progress=False)
    assert set(res) == {"losses", "final_loss", "accuracy", "seconds"} and len(res["losses"]) == 120
    # chance is ln 5 = 1.61; measured over seeds 0..5 (model seed s, data seed s+1): final loss
    # 0.003-0.10, accuracy 1.0 in all six
    assert res["final_loss"] < 0.4
    assert res["accuracy"] > 0.9
    with pytest.raises(ValueError, match="warmup"):
        gau.train_reversal(model, 1, warmup=-1)
