"""Tests of companion.sequence.positions (chapter 8): encodings, position samplers, log-n attention, tasks."""

import math

import pytest
import torch

from companion import positions as P


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- encodings
def test_sinusoid_matches_scalar_formula():
    pos = torch.tensor([0.0, 1.5, 7.0, 100.25], dtype=torch.float64)
    enc = P.sinusoidal_encoding(pos, 8, base=100.0)
    assert enc.shape == (4, 8) and enc.dtype == torch.float64
    for a, t in enumerate(pos.tolist()):
        for i in range(4):
            w = 100.0 ** (-2 * i / 8)
            assert enc[a, 2 * i].item() == pytest.approx(math.sin(t * w), abs=1e-12)
            assert enc[a, 2 * i + 1].item() == pytest.approx(math.cos(t * w), abs=1e-12)


def test_learned_positions_lookup_and_interpolation():
    torch.manual_seed(0)
    lp = P.LearnedPositions(10, 6)
    pos = torch.tensor([[0.0, 3.0, 9.0, 2.5]])
    out = lp(pos)
    assert torch.equal(out[0, :3], lp.table[[0, 3, 9]])
    assert torch.allclose(out[0, 3], 0.5 * (lp.table[2] + lp.table[3]))
    with pytest.raises(ValueError, match="positions must lie"):
        lp(torch.tensor([[0.0, 9.5]]))
    with pytest.raises(ValueError, match="size"):
        P.LearnedPositions(1, 4)


def test_rope_against_complex_multiplication():
    # second method: a pair (x0, x1) is the complex number x0 + i x1, rotated by exp(i t w)
    x = torch.randn(2, 5, 8, generator=gen(1), dtype=torch.float64)
    pos = torch.rand(2, 5, generator=gen(2), dtype=torch.float64) * 50
    out = P.apply_rope(x, pos, base=10000.0)
    w = 10000.0 ** (-2 * torch.arange(4, dtype=torch.float64) / 8)
    z = torch.complex(x[..., 0::2], x[..., 1::2]) * torch.exp(1j * pos[..., None] * w)
    ref = torch.stack([z.real, z.imag], dim=-1).flatten(-2)
    assert torch.allclose(out, ref, atol=1e-12)


def test_rope_scores_depend_on_differences_only():
    q = torch.randn(1, 6, 16, generator=gen(3), dtype=torch.float64)
    k = torch.randn(1, 6, 16, generator=gen(4), dtype=torch.float64)
    pos = torch.rand(1, 6, generator=gen(5), dtype=torch.float64) * 20

    def scores(p):
        return P.apply_rope(q, p) @ P.apply_rope(k, p).transpose(-1, -2)

    s0 = scores(pos)
    for shift in (0.7, 13.0, 1000.0):
        assert torch.allclose(scores(pos + shift), s0, atol=1e-9)
    # and they do depend on the differences (the check above is not vacuous)
    assert not torch.allclose(scores(pos * 2), s0, atol=1e-3)


def test_rope_model_is_shift_invariant_sin_model_is_not():
    torch.manual_seed(0)
    tok, _ = P.bucket_sort_batch(3, 6, gen(6))
    pos = P.plain_positions(3, tok.shape[1])
    rope = P.PositionTransformer(6, dim=16, heads=2, layers=2, pe="rope").eval()
    sin = P.PositionTransformer(6, dim=16, heads=2, layers=2, pe="sin").eval()
    with torch.no_grad():
        assert torch.allclose(rope(tok, pos + 37.0), rope(tok, pos), atol=1e-4)
        assert not torch.allclose(sin(tok, pos + 37.0), sin(tok, pos), atol=1e-2)


# ----------------------------------------------------------------------------- samplers
def test_plain_positions():
    p = P.plain_positions(3, 5)
    assert p.shape == (3, 5) and torch.equal(p[2], torch.arange(5.0))


def test_random_positions_law():
    B, T, L = 20000, 8, 64
    p = P.random_positions(B, T, L, gen(0))
    assert p.shape == (B, T)
    assert (p == p.round()).all() and p.min() >= 0 and p.max() <= L - 1
    assert (p[:, 1:] > p[:, :-1]).all()  # sorted and distinct
    # k-th smallest of a uniform T-subset of {0..L-1} has mean (k+1)(L+1)/(T+1) - 1
    k = torch.arange(T, dtype=torch.float64)
    exact = (k + 1) * (L + 1) / (T + 1) - 1
    mean = p.double().mean(0)
    se = p.double().std(0) / math.sqrt(B)
    # 4 standard errors: over seeds 0-4 the largest |z| (over the 8 ranks) measured was 1.9
    assert ((mean - exact).abs() < 4 * se).all()
    # every value is included with probability T/L: worst of 64 cells within 4.5 SE (measured max |z| 2.3-2.9, seeds 0-4)
    counts = torch.bincount(p.long().flatten(), minlength=L).double()
    pi = T / L
    assert ((counts - B * pi).abs() < 4.5 * math.sqrt(B * pi * (1 - pi))).all()


def test_equal_mean_positions_law():
    B, T = 40000, 10
    p = P.equal_mean_positions(B, T, gen(1), dtype=torch.float64)
    assert p.shape == (B, T) and p.dtype == torch.float64
    assert (p[:, 0] == 0).all() and (p[:, 1:] >= p[:, :-1]).all()
    # rows are nu * linspace(0, 1, T): equal gaps
    gaps = p.diff(dim=1)
    assert torch.allclose(gaps, gaps[:, :1].expand_as(gaps), rtol=1e-12, atol=1e-12)
    nu = p[:, -1]
    se = nu.std() / math.sqrt(B)
    # mean T-1 so that the mean positions are exactly 0..T-1; 4 SE (measured |z| <= 2.9 over seeds 1-5)
    assert abs(nu.mean() - (T - 1)) < 4 * se
    mean = p.mean(0)
    assert ((mean - torch.arange(T, dtype=torch.float64)).abs() <= 4 * p.std(0) / math.sqrt(B) + 1e-12).all()
    # exponential: std = mean (sd of std/mean ~ 0.007 at B = 40000; measured |dev| <= 0.0067 over seeds 1-5),
    # and P(nu > 3 mean) = e^-3 (measured |z| <= 1.6)
    assert abs(nu.std() / nu.mean() - 1) < 0.03
    frac = (nu > 3 * (T - 1)).double().mean()
    assert abs(frac - math.exp(-3)) < 4 * math.sqrt(math.exp(-3) * (1 - math.exp(-3)) / B)
    # explicit mean (measured |z| <= 2.9 over seeds 2-6)
    p2 = P.equal_mean_positions(B, T, gen(2), mean=3.0, dtype=torch.float64)
    assert abs(p2[:, -1].mean() - 3.0) < 4 * p2[:, -1].std() / math.sqrt(B)


def test_uniform_positions():
    p = P.uniform_positions(2, 5, 256)
    assert torch.equal(p[0], torch.tensor([0.0, 64.0, 128.0, 191.0, 255.0]))


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: P.random_positions(2, 10, 5, gen()), ValueError, "max_len"),
        (lambda: P.random_positions(2, 3, 5, 0), TypeError, "generator"),
        (lambda: P.random_positions(0, 3, 5, gen()), ValueError, "batch"),
        (lambda: P.plain_positions(2, 2.0), TypeError, "length"),
        (lambda: P.equal_mean_positions(2, 3, gen(), mean=-1.0), ValueError, "mean"),
        (lambda: P.equal_mean_positions(2, 3, 1.5), TypeError, "generator"),
        (lambda: P.uniform_positions(2, 10, 5), ValueError, "max_len"),
        (lambda: P.sinusoidal_encoding(torch.arange(3.0), 5), ValueError, "even"),
        (lambda: P.sinusoidal_encoding(torch.arange(3), 4), TypeError, "positions"),
        (lambda: P.sinusoidal_encoding(torch.tensor([0.0, float("nan")]), 4), ValueError, "positions"),
        (lambda: P.apply_rope(torch.randn(2, 3, 4), torch.arange(4.0)), ValueError, "length"),
        (lambda: P.apply_rope(torch.randn(2, 3, 5), torch.arange(3.0)), ValueError, "even"),
        (lambda: P.apply_rope(torch.randn(3, 4), torch.arange(3.0)), ValueError, "x"),
        (lambda: P.log_n_scale(16, 1), ValueError, "train_length"),
        (lambda: P.attention(torch.randn(3, 4), torch.randn(5, 3), torch.randn(5, 2)), ValueError, "feature"),
        (lambda: P.attention(torch.randn(3, 4), torch.randn(5, 4), torch.randn(4, 2)), ValueError, "tokens"),
        (lambda: P.attention(torch.randn(4), torch.randn(5, 4), torch.randn(5, 2)), ValueError, "q"),
        (lambda: P.attention_entropy(torch.randn(3, 4), torch.randn(5, 3)), ValueError, "feature"),
        (lambda: P.entropy_curve([]), ValueError, "lengths"),
        (lambda: P.entropy_curve([4], scale=0.0), ValueError, "scale"),
        (lambda: P.gaussian_entropy_limit(0.5, 1.0), ValueError, "n"),
        (lambda: P.gaussian_entropy_limit(4, -1.0), ValueError, "sigma"),
        (lambda: P.first_marker_batch(2, 1, gen()), ValueError, "length"),
        (lambda: P.bucket_sort_batch(2, 4, 3), TypeError, "generator"),
        (lambda: P.PositionTransformer(5, pe="alibi"), ValueError, "pe"),
        (lambda: P.PositionTransformer(5, dim=12, heads=4), ValueError, "heads"),
        (lambda: P.PositionTransformer(5, dim=16, heads=2)(torch.zeros(1, 3), torch.zeros(1, 3)), TypeError, "tokens"),
        (
            lambda: P.PositionTransformer(5, dim=16, heads=2)(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4)),
            ValueError,
            "positions",
        ),
        (lambda: P.make_sampler("shuffle"), ValueError, "kind"),
        (lambda: P.train_task("copy", steps=1), ValueError, "task"),
        (lambda: P.task_accuracy(torch.nn.Identity(), "copy", 4), ValueError, "task"),
    ],
)
def test_validation(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ----------------------------------------------------------------------------- attention
def test_attention_matches_torch_and_log_n_is_identity_at_train_length():
    q = torch.randn(2, 3, 7, 8, generator=gen(0), dtype=torch.float64)
    k = torch.randn(2, 3, 16, 8, generator=gen(1), dtype=torch.float64)
    v = torch.randn(2, 3, 16, 5, generator=gen(2), dtype=torch.float64)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(P.attention(q, k, v), ref, atol=1e-12)
    assert torch.allclose(P.attention(q, k, v, train_length=16), ref, atol=1e-12)
    # at n = 64 with m = 16 the logits are multiplied by log 64 / log 16 = 1.5
    k64, v64 = k.repeat(1, 1, 4, 1), v.repeat(1, 1, 4, 1)
    ref64 = torch.nn.functional.scaled_dot_product_attention(q, k64, v64, scale=1.5 / math.sqrt(8))
    out, w = P.attention(q, k64, v64, train_length=16, return_weights=True)
    assert torch.allclose(out, ref64, atol=1e-12)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
    assert P.log_n_scale(64, 16) == pytest.approx(1.5)


def test_entropy_matches_direct_formula_and_bounds():
    q = torch.randn(4, 8, generator=gen(3), dtype=torch.float64)
    k = torch.randn(10, 8, generator=gen(4), dtype=torch.float64)
    _, w = P.attention(q, k, k, return_weights=True)
    h = P.attention_entropy(q, k)
    assert torch.allclose(h, -(w * w.log()).sum(-1), atol=1e-12)
    assert (h > 0).all() and (h <= math.log(10) + 1e-12).all()
    # identical keys: uniform attention, entropy log n exactly
    assert torch.allclose(
        P.attention_entropy(q, k[:1].expand(10, 8)), torch.full((4,), math.log(10), dtype=torch.float64)
    )


def test_entropy_large_n_limit():
    # iid N(0, s^2) logits: H -> log n - s^2/2. At n = 4096, s = 0.5, 256 queries the deviation
    # over seeds 0-5 was within [-0.0027, +0.0028]; tolerance 0.01
    for seed in (0, 1):
        h = P.entropy_curve([4096], scale=0.5, seed=seed).item()
        assert abs(h - P.gaussian_entropy_limit(4096, 0.5).item()) < 0.01
    # and the unscaled entropy grows like log n for small logits: slope in log n close to 1
    lengths = [256, 1024, 4096]
    h = P.entropy_curve(lengths, scale=0.25)
    slope = (h[-1] - h[0]) / math.log(16)
    assert abs(slope - 1) < 0.01


def test_log_n_scaling_flattens_entropy_curve():
    # logits of std 3 (sharp attention): spread of the mean entropy over n in 16..256.
    # measured over seeds 0-5: unscaled 1.29-1.45 nats, log-n scaled 0.03-0.26 (ratio <= 0.2)
    lengths = [16, 32, 64, 128, 256]
    for seed in (0, 2):
        plain = P.entropy_curve(lengths, scale=3.0, seed=seed)
        scaled = P.entropy_curve(lengths, scale=3.0, seed=seed, train_length=16)
        assert (plain.diff() > 0).all()
        assert plain.max() - plain.min() > 1.0
        assert scaled.max() - scaled.min() < 0.3 * (plain.max() - plain.min())
        assert scaled[0] == pytest.approx(plain[0].item(), abs=1e-12)  # identical at n = m


# ----------------------------------------------------------------------------- tasks
def test_first_marker_task():
    tok, tgt = P.first_marker_batch(500, 12, gen(0))
    assert tok.shape == tgt.shape == (500, 13)
    body = tok[:, :-1]
    assert ((body == 4).sum(1) == 1).all() and ((body == 5).sum(1) == 1).all()
    assert (tok[:, -1] == 6).all() and (tgt[:, :-1] == -100).all()
    a_first = (body == 4).long().argmax(1) < (body == 5).long().argmax(1)
    assert torch.equal(tgt[:, -1], (~a_first).long())
    assert 0.4 < tgt[:, -1].double().mean() < 0.6  # balanced classes (sd 0.022)


def test_bucket_sort_task():
    tok, tgt = P.bucket_sort_batch(200, 9, gen(1))
    assert tok.shape == (200, 18)
    x, y = tok[:, :9], tgt[:, 9:]
    assert (tok[:, 9:] == 5).all() and (tgt[:, :9] == -100).all()
    assert (y.diff(dim=1) >= 0).all()
    for s in range(5):  # same multiset of symbols
        assert torch.equal((x == s).sum(1), (y == s).sum(1))


def test_even_pairs_task_counts_pairs():
    tok, tgt = P.even_pairs_batch(300, 11, gen(2))
    x = tok[:, :-1]
    n01 = ((x[:, :-1] == 0) & (x[:, 1:] == 1)).sum(1)
    n10 = ((x[:, :-1] == 1) & (x[:, 1:] == 0)).sum(1)
    assert torch.equal(tgt[:, -1], (n01 == n10).long())
    assert (tok[:, -1] == 2).all()


# ----------------------------------------------------------------------------- model and training
@pytest.mark.parametrize("pe", ["sin", "learned", "rope"])
def test_model_shapes_and_float_positions(pe):
    torch.manual_seed(0)
    m = P.PositionTransformer(6, dim=16, heads=2, layers=1, pe=pe, max_len=64, train_length=16)
    tok, _ = P.bucket_sort_batch(3, 5, gen(0))
    pos = P.equal_mean_positions(3, 10, gen(1)).clamp(max=63)
    out = m(tok, pos)
    assert out.shape == (3, 10, 6) and torch.isfinite(out).all()


def test_train_task_smoke_and_accuracy():
    torch.manual_seed(0)
    m = P.train_task("evenpairs", "random", steps=3, dim=16, heads=2, layers=1, progress=False)
    assert not m.training
    for positions in ("plain", "uniform", P.make_sampler("equal_mean")):
        acc = P.task_accuracy(m, "evenpairs", 8, positions, n=64)
        assert 0.0 <= acc <= 1.0

    # accuracy counts answers only: a model that always outputs the right class scores 1
    class Oracle(torch.nn.Module):
        def forward(self, tok, pos):
            x = tok[:, :-1]
            ans = (x[:, 0] == x[:, -1]).long()
            logits = torch.zeros(*tok.shape, 3)
            logits[:, -1] = torch.nn.functional.one_hot(ans, 3).float()
            return logits

    assert P.task_accuracy(Oracle(), "evenpairs", 9, n=128) == 1.0


def test_log_n_scale_refuses_a_single_key_but_attention_handles_it():
    """log_1 = 0 would zero the logits (uniform attention): refused; one key needs no factor."""
    with pytest.raises(ValueError, match="n must be >= 2"):
        P.log_n_scale(1, 16)
    with pytest.raises(ValueError, match="n must be >= 2"):
        P.log_n_scale(torch.tensor([1, 4]), 16)
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 1, 4), torch.randn(1, 1, 4)
    out = P.attention(q, k, v, train_length=16)
    assert torch.equal(out, v.expand(1, 3, 4))
    with pytest.raises(ValueError, match="train_length"):
        P.attention(q, k, v, train_length=1)


# ----------------------------------------------------------------------------- Beta sampler, log-n flag, random test
def test_beta_positions_mean_bound_and_tail():
    """E t_j = j (equal mean), positions <= L-1, and at alpha = 1 the tail of the last position is
    P(t > x) = (1 - x/(L-1))**beta exactly (beta = (L-T)/(T-1))."""
    B, T, L = 40000, 8, 64
    p = P.beta_positions(B, T, L, gen(0), dtype=torch.float64)
    assert p.shape == (B, T) and p.dtype == torch.float64
    assert (p >= 0).all() and (p <= L - 1).all() and (p.diff(dim=1) >= 0).all()
    j = torch.arange(T, dtype=torch.float64)
    z = ((p.mean(0)[1:] - j[1:]) / (p.std(0)[1:] / B**0.5)).abs().max()
    assert z < 4
    beta = (L - T) / (T - 1)
    for x in (7.0, 21.0, 40.0):
        exact = (1 - x / (L - 1)) ** beta
        mc = (p[:, -1] > x).double().mean().item()
        assert abs(mc - exact) < 4 * (exact * (1 - exact) / B) ** 0.5 + 1e-4


def test_beta_positions_alpha_moves_mass_to_the_ends_and_is_seeded():
    B, T, L = 20000, 8, 64
    a1 = P.beta_positions(B, T, L, gen(1))[:, -1]
    a_half = P.beta_positions(B, T, L, gen(1), alpha=0.5)[:, -1]
    assert abs(a_half.mean().item() - (T - 1)) < 0.5 and abs(a1.mean().item() - (T - 1)) < 0.5
    assert (a_half > 4 * (T - 1)).float().mean() > (a1 > 4 * (T - 1)).float().mean()  # heavier tail
    assert torch.equal(P.beta_positions(5, T, L, gen(3)), P.beta_positions(5, T, L, gen(3)))
    assert torch.equal(P.beta_positions(3, 1, L, gen(0)), torch.zeros(3, 1))


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: P.beta_positions(2, 8, 8, gen(0)), ValueError, "max_len"),
        (lambda: P.beta_positions(2, 4, 16, gen(0), alpha=0.0), ValueError, "alpha"),
        (lambda: P.beta_positions(2, 4, 16, 0), TypeError, "generator"),
        (lambda: P.make_sampler("beta", 16, alpha=-1.0), ValueError, "alpha"),
        (lambda: P.sequence_length("copy", 4), ValueError, "task"),
        (lambda: P.train_task("sort", log_n=1, steps=1, progress=False), TypeError, "log_n"),
    ],
)
def test_beta_and_log_n_validation(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_sequence_length_and_log_n_flag_sets_train_length():
    assert P.sequence_length("sort", 16) == 32
    assert P.sequence_length("first", 16) == 17 and P.sequence_length("evenpairs", 5) == 6
    m = P.train_task("first", "beta", steps=2, dim=16, heads=2, layers=1, max_length=6, log_n=True, progress=False)
    assert m.train_length == 7
    m = P.train_task("first", "plain", steps=2, dim=16, heads=2, layers=1, max_length=6, progress=False)
    assert m.train_length is None


def test_extrapolation_table_random_test_only_for_random_models():
    rows = P.extrapolation_table(["first"], ["plain", "random"], [0], [4, 8], n=32, progress=False, random_test=True,
                                 steps=2, dim=16, heads=2, layers=1, max_length=4)
    assert [r["positions"] for r in rows] == ["plain", "random"]
    assert "acc_random_test" not in rows[0] and set(rows[1]["acc_random_test"]) == {4, 8}
    assert all(0 <= a <= 1 for a in rows[1]["acc_random_test"].values())


def test_train_task_leaves_the_callers_rng_and_is_reproducible():
    from companion.sequence.positions import train_task

    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    kw = dict(steps=3, batch_size=4, dim=16, heads=2, layers=1, max_length=4, progress=False, seed=3)
    a = train_task("sort", **kw)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_task("sort", **kw)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
