"""The training loop: reaches a known optimum, is reproducible, and its EMA is the documented average."""

import math

import pytest
import torch
from torch import nn

from companion.core.train import EMA, batches, fit


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(512, 3, generator=g)
    w_true = torch.tensor([[1.5], [-2.0], [0.5]])
    y = X @ w_true + 0.1 * torch.randn(512, 1, generator=g)
    return torch.cat([X, y], 1)


def _mse(model, batch, g):
    return ((model(batch[:, :3]) - batch[:, 3:]) ** 2).mean()


def test_fit_reaches_least_squares_solution():
    data = _regression()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    res = fit(model, _mse, data, steps=1500, batch_size=128, lr=3e-2, progress=False)
    X1 = torch.cat([data[:, :3], torch.ones(512, 1)], 1)
    sol = torch.linalg.lstsq(X1, data[:, 3:]).solution[:, 0]
    got = torch.cat([model.weight[0], model.bias]).detach()
    assert (got - sol).abs().max() < 0.02
    assert res.losses[-1] < res.losses[0] / 50


def test_fit_is_deterministic():
    data = _regression()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(fit(nn.Linear(3, 1), _mse, data, steps=50, seed=5, progress=False).losses)
    assert runs[0] == runs[1]


def test_fit_without_ema_returns_the_model():
    res = fit(nn.Linear(3, 1), _mse, _regression(), steps=3, ema_decay=None, progress=False)
    assert res.ema is res.model


def test_batches_without_replacement_have_no_repeats():
    data = torch.arange(30, dtype=torch.float32)[:, None]
    b = next(batches(data, 30, torch.Generator().manual_seed(0), replace=False))
    assert sorted(b[:, 0].tolist()) == list(range(30))
    with pytest.raises(ValueError, match="exceeds"):
        next(batches(data, 31, torch.Generator().manual_seed(0), replace=False))


def test_fit_accepts_a_sampler():
    sampler = lambda n, g: torch.randn(n, 4, generator=g)
    res = fit(nn.Linear(3, 1), _mse, sampler, steps=5, progress=False)
    assert len(res.losses) == 5


def test_ema_is_the_exponential_average():
    m = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = EMA(m, decay=0.9, warmup=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m)
    ema.update(m)
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 1 - 0.9**2))


def test_ema_warmup_forgets_the_initial_weights():
    """With warm-up, d_i = min(d, (1+i)/(10+i)): the weight left on the initial value after
    N updates is prod_i d_i, computed here independently."""
    m = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = EMA(m, decay=0.999)
    with torch.no_grad():
        m.weight.fill_(1.0)
    for _ in range(2000):
        ema.update(m)
    left = 1.0
    for i in range(2000):
        left *= min(0.999, (1 + i) / (10 + i))
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 1 - left))
    assert left < 1e-6 < 0.999**2000


def test_fit_validation():
    data = _regression()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fit(nn.Linear(3, 1), _mse, data, steps=0)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        fit(nn.Linear(3, 1), _mse, data, steps=1, lr=-1.0)
    with pytest.raises(TypeError, match="data must be"):
        fit(nn.Linear(3, 1), _mse, [1, 2, 3], steps=1)
    with pytest.raises(ValueError, match="scalar"):
        fit(nn.Linear(3, 1), lambda m, b, g: m(b[:, :3]), data, steps=1, progress=False)
    with pytest.raises(FloatingPointError, match="loss became"):
        fit(nn.Linear(3, 1), lambda m, b, g: m(b[:, :3]).sum() * float("nan"), data, steps=1, progress=False)
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(1, 1), decay=1.0)


def test_fit_refuses_settings_that_would_train_wrongly():
    model = nn.Linear(2, 1)
    data = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    loss = lambda m, b, g: m(b).pow(2).mean()
    kw = dict(steps=2, batch_size=4, progress=False)
    for bad, err, msg in [
        (dict(grad_clip=-1.0), ValueError, "grad_clip must be finite and > 0"),
        (dict(grad_clip=0.0), ValueError, "grad_clip must be finite and > 0"),
        (dict(seed=1.5), TypeError, "seed must be a torch.Generator or an int seed"),
        (dict(seed=True), TypeError, "seed must be a torch.Generator or an int seed"),
        (dict(ema_decay=1.5), ValueError, "ema_decay must be in"),
        (dict(warmup=-1), ValueError, "warmup must be >= 0"),
    ]:
        with pytest.raises(err, match=msg):
            fit(model, loss, data, **kw, **bad)
    with pytest.raises(ValueError, match="at least one example"):
        fit(model, loss, data[:0], **kw)
    with pytest.raises(TypeError, match="floating scalar tensor"):
        fit(model, lambda m, b, g: 1.0, data, **kw)
    with pytest.raises(ValueError, match="does not depend on the model"):
        fit(model, lambda m, b, g: b.pow(2).mean(), data, **kw)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(nn.ReLU(), loss, data, **kw)


def test_smoothed_is_the_running_mean():
    from companion.core.train import FitResult

    losses = [float(v) for v in torch.arange(10, dtype=torch.float64) ** 2]
    r = FitResult(torch.nn.Identity(), torch.nn.Identity(), losses)
    ref = torch.tensor([sum(losses[i:i + 3]) / 3 for i in range(8)], dtype=torch.float64)
    assert torch.allclose(r.smoothed(3), ref, rtol=1e-12)
    assert torch.equal(r.smoothed(20), torch.tensor(losses, dtype=torch.float64))  # shorter than the window
    assert torch.allclose(r.smoothed(1), torch.tensor(losses, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        r.smoothed(0)


@pytest.mark.parametrize("warmup, cosine", [(0, True), (3, True), (4, False)])
def test_learning_rate_schedule_in_closed_form(warmup, cosine):
    """With a linear loss the gradient is constant, so each Adam step moves the weight by exactly
    lr * factor(i) (m_hat / sqrt(v_hat) = 1): the recorded path reveals the warmup and cosine factors."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    path = []

    def loss_fn(m, batch, g):
        path.append(m.weight.item())
        return m.weight.sum() + 0 * batch.sum()

    steps, lr = 12, 0.01
    fit(model, loss_fn, torch.zeros(4, 1), steps=steps, batch_size=2, lr=lr, ema_decay=None, grad_clip=None,
        warmup=warmup, cosine=cosine, progress=False)
    path.append(model.weight.item())
    moves = [path[i] - path[i + 1] for i in range(steps)]
    for i, mv in enumerate(moves):
        if i < warmup:
            f = (i + 1) / warmup
        elif cosine:
            f = 0.1 + 0.45 * (1 + math.cos(math.pi * (i - warmup) / (steps - warmup)))
        else:
            f = 1.0
        assert abs(mv - lr * f) < 1e-6 * lr, (i, mv, lr * f)


def test_fit_is_silent_without_progress(capsys):
    fit(nn.Linear(2, 2), lambda m, b, g: (m(b) ** 2).mean(), torch.ones(4, 2), steps=3, batch_size=2,
        progress=False)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""


def test_batches_of_one_row():
    g = torch.Generator().manual_seed(0)
    data = torch.arange(5.0)[:, None]
    b = next(batches(data, 1, g))
    assert b.shape == (1, 1)
    b = next(batches(data, 5, g, replace=False))
    assert sorted(b[:, 0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(data, 0, g))
    assert next(batches(torch.arange(5.0), 3, g)).shape == (3,)  # 1-d data: a batch of scalars
    with pytest.raises(ValueError, match="at least one example"):
        next(batches(torch.zeros(0, 2), 1, g))


def test_fit_with_tiny_batches_and_few_rows():
    """batch_size = 1 is a valid batch; with replacement a batch may exceed the number of rows."""
    loss = lambda m, b, g: ((m(b) - b) ** 2).mean()
    r = fit(nn.Linear(2, 2), loss, torch.ones(3, 2), steps=2, batch_size=1, progress=False)
    assert len(r.losses) == 2
    r = fit(nn.Linear(2, 2), loss, torch.ones(2, 2), steps=2, batch_size=8, replace=True, progress=False)
    assert len(r.losses) == 2
    with pytest.raises(ValueError, match="replace=False"):
        fit(nn.Linear(2, 2), loss, torch.ones(2, 2), steps=2, batch_size=8, replace=False, progress=False)


def test_ema_fused_update_matches_the_formula():
    """theta_ema <- d theta_ema + (1 - d) theta, for every tensor, with the warm-up decay."""
    from companion.core.train import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    ema = EMA(model, decay=0.9, warmup=True)
    before = [p.detach().clone() for p in ema.model.parameters()]
    for p in model.parameters():
        p.data.add_(1.0)
    d = ema.current_decay()
    ema.update(model)
    for pe, p0, p in zip(ema.model.parameters(), before, model.parameters(), strict=True):
        torch.testing.assert_close(pe, d * p0 + (1 - d) * p)
    assert d == 1 / 10


def test_profile_step_reports_every_part_and_leaves_the_model():
    from companion.core.train import profile_step

    model = torch.nn.Linear(4, 4)
    w = model.weight.detach().clone()
    out = profile_step(model, lambda m, b, g: (m(b) - b).square().mean(), torch.randn(64, 4), batch_size=8, repeats=3)
    assert set(out) == {"batch", "loss", "backward", "optimiser", "ema"}
    assert all(v >= 0 for v in out.values())
    assert torch.equal(model.weight, w)
