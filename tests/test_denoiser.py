"""The digits denoiser's wrappers against closed forms, and the kept-weights mechanism."""

import json
import math

import pytest
import torch

from companion import denoiser as dn
from companion import ode
from companion.core.nets import UNet
from companion.core.schedules import DiscreteSchedule
from companion.diffusion.sde import VPSDE
from companion.experiments import load_weights, registry, save_weights

F64 = torch.float64


def _gaussian_denoiser(m2: float) -> ode.ScoreNet:
    """A ScoreNet whose F is zero (fresh UNet): D(x, s) = c_skip x = m2 / (m2 + s^2) x, which is the
    exact posterior mean E[x0 | x0 + s eps = x] of data x0 ~ N(0, m2 I)."""
    return ode.ScoreNet(UNet(ch=8), sigma_data=math.sqrt(m2)).double()


def test_eps_model_is_the_exact_noise_predictor_for_gaussian_data():
    m2 = 0.7
    sched = DiscreteSchedule.linear(1000)
    eps = dn.eps_model(_gaussian_denoiser(m2), sched)
    x = torch.randn(5, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    for t in (1, 10, 300, 999, 1000):
        a, b = sched.alpha_bar[t].item(), sched.beta_bar[t].item()
        exact = b * x / (a**2 * m2 + b**2)      # E[eps | x_t] for x_t = a x0 + b eps, x0 ~ N(0, m2)
        torch.testing.assert_close(eps(x, t), exact, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(eps(x.reshape(5, 64), t), exact.reshape(5, 64), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="t_label"):
        eps(x, 1001)
    with pytest.raises(ValueError, match="t_label"):
        eps(x, 0)
    with pytest.raises(TypeError, match="ScoreNet"):
        dn.eps_model(UNet(ch=8), sched)


def test_vp_score_is_the_exact_score_for_gaussian_data():
    m2 = 1.3
    sde = VPSDE()
    score = dn.vp_score(_gaussian_denoiser(m2), sde)
    x = torch.randn(4, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    for t in (0.01, 0.3, 1.0):
        tt = torch.tensor(t, dtype=F64)
        a, b = sde.alpha_bar(tt).item(), sde.beta_bar(tt).item()
        torch.testing.assert_close(score(x, t), -x / (a**2 * m2 + b**2), rtol=1e-10, atol=1e-12)


def test_generate_shapes_samplers_and_limits():
    torch.manual_seed(0)
    model = dn.digits_denoiser(0, ch=8)
    for sampler in dn.DIGITS_SAMPLERS:
        x = dn.generate(model, sampler, 4, 3, seed=0)
        assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
    # the same seed gives the same draw; another seed another one
    a, b = dn.generate(model, "DDPM", 3, 2, seed=5), dn.generate(model, "DDPM", 3, 2, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, dn.generate(model, "DDPM", 3, 2, seed=6))
    with pytest.raises(ValueError, match="sampler must be one of"):
        dn.generate(model, "Euler-Maruyama", 4, 2, 0)
    with pytest.raises(ValueError, match="nfe must be <= 10000"):
        dn.generate(model, "DDIM", 10**6, 2, 0)
    with pytest.raises(ValueError, match="nfe"):
        dn.generate(model, "Heun", 1, 2, 0)


def test_digits_denoiser_seeds_its_own_weights_without_touching_the_global_rng():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = dn.digits_denoiser(3, ch=8), dn.digits_denoiser(3, ch=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="unknown settings"):
        dn.digits_denoiser(0, width=8)
    assert abs(a.sigma_data - dn.digits_denoiser(0, ch=8).sigma_data) == 0


def test_residual_restorer_starts_as_identity():
    r = dn.ResidualRestorer(10, seed=0, ch=8)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(r(x, 3.0), x)
    torch.testing.assert_close(r(x, torch.tensor([1.0, 10.0])), x)


def test_kept_weights_roundtrip_and_tampering(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_RESULTS", str(tmp_path))
    exp = registry("ch5")[("ch5", "digits_denoiser")]
    cfg = exp.config["model"]
    model = dn.digits_denoiser(0, **{k: cfg[k] for k in ("ch", "mult", "blocks", "max_freq")})
    sha = save_weights("ch5", "digits_denoiser", 0, model.state_dict())
    record = {"chapter": "ch5", "name": "digits_denoiser", "command": exp.command, "config": exp.config,
              "results": {"weights_sha256": {"0": sha}}, "provenance": {}}
    (tmp_path / "ch5" / "digits_denoiser.json").write_text(json.dumps(record))
    loaded = dn.load_digits_denoiser(0)
    for p, q in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="no weights for seed 1|kept no weights"):
        load_weights("ch5", "digits_denoiser", 1)
    state = torch.load(tmp_path / "ch5" / "digits_denoiser_seed0.pt", weights_only=True)
    k = next(iter(state))
    state[k] = state[k] + 1e-3
    torch.save(state, tmp_path / "ch5" / "digits_denoiser_seed0.pt")
    with pytest.raises(ValueError, match="checksum"):
        dn.load_digits_denoiser(0)


def test_bad_inputs_get_clear_errors():
    model = dn.digits_denoiser(0, ch=8)
    with pytest.raises(TypeError, match="ScoreNet"):
        dn.generate(UNet(ch=8), "DDPM", 2, 2, 0)
    with pytest.raises(ValueError, match="shape"):
        dn.generate(model, "Euler", 2, 2, 0, shape=(1, -8, 8))
    with pytest.raises(ValueError, match="n must be <= 1000000"):
        dn.generate(model, "Euler", 2, 10**7, 0)
    score = dn.vp_score(model, VPSDE())
    with pytest.raises(ValueError, match="t must lie in"):
        score(torch.zeros(2, 1, 8, 8), 1.5)
    with pytest.raises(ValueError, match="t must lie in"):
        score(torch.zeros(2, 1, 8, 8), -0.1)
    r = dn.ResidualRestorer(10, ch=8)
    for t in (-1.0, 11.0, float("nan")):
        with pytest.raises(ValueError, match="t must lie in"):
            r(torch.zeros(2, 1, 8, 8), t)
    with pytest.raises(ValueError):
        r(torch.zeros(2, 1, 8, 8), torch.tensor([1.0, 12.0]))
    with pytest.raises(TypeError, match="t must be a number"):
        r(torch.zeros(2, 1, 8, 8), "3")


class _ZeroNet(torch.nn.Module):
    """F = 0 at no cost (a fresh UNet's output is zero too, but costs a forward pass)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, u, c):
        return torch.zeros_like(u)


@pytest.mark.parametrize("sampler", dn.DIGITS_SAMPLERS)
def test_every_sampler_draws_the_gaussian_law_through_its_change_of_variables(sampler):
    """With F = 0 the denoiser is exactly that of N(0, m2 I) (sigma_data^2 = m2), so every sampler,
    through its own wrapper (eps_model, vp_score, denoiser_fn), must draw pixels of variance m2 + the
    small end noise at enough steps. 400 images x 64 pixels: the standard error of the variance is
    0.9 %; tolerance 6 % covers the samplers' own discretisation error at these step counts. The
    ancestral samplers with the posterior variance need the most steps: at 100 they are 10 % low
    for this law, the variance a point estimate of x0 leaves out (chapter 1, section 5)."""
    m2 = 0.5
    model = ode.ScoreNet(_ZeroNet(), sigma_data=math.sqrt(m2))
    nfe = {"Heun": 200, "predictor-corrector (VP)": 200, "DDPM": 1000, "Euler ancestral": 1000}.get(sampler, 100)
    x = dn.generate(model, sampler, nfe, 400, seed=1)
    assert abs(x.var().item() / m2 - 1) < 0.06, (sampler, x.var().item())


def test_generate_passes_lower_order_final():
    model = dn.digits_denoiser(0, ch=8)
    model.sigma_data = 0.7
    a = dn.generate(model, "UniPC-3", 10, 4, seed=2)
    b = dn.generate(model, "UniPC-3", 10, 4, seed=2, lower_order_final=True)
    c = dn.generate(model, "UniPC-3", 10, 4, seed=2, lower_order_final=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_missing_weights_error_names_companion_results(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="COMPANION_RESULTS"):
        dn.load_digits_denoiser(0)  # no result file there
    exp = registry("ch5")[("ch5", "digits_denoiser")]
    (tmp_path / "ch5").mkdir()
    record = {"chapter": "ch5", "name": "digits_denoiser", "command": exp.command, "config": exp.config,
              "results": {"weights_sha256": {"0": "0" * 64}}, "provenance": {}}
    (tmp_path / "ch5" / "digits_denoiser.json").write_text(json.dumps(record))
    with pytest.raises(FileNotFoundError, match="COMPANION_RESULTS"):
        dn.load_digits_denoiser(0)  # a result file, but no weights file next to it
    monkeypatch.delenv("COMPANION_RESULTS")
    monkeypatch.setattr("companion.store.repo_root", lambda: tmp_path / "nowhere")
    monkeypatch.setattr("companion.store.packaged_results", lambda: None)
    with pytest.raises(FileNotFoundError, match="set COMPANION_RESULTS"):
        dn.load_digits_denoiser(0)  # no results/ beside the package and none installed with it
