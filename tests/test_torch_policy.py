"""The entry points accept what torch accepts: ``generator=None`` draws from torch's global
generator, an empty batch gives an empty result of the right shape, and a network may return
float16/bfloat16 (the sampler state stays in float32/float64). ``tools/fuzz_api.py`` covers
every entry point; these are the direct checks of each rule."""

import pytest
import torch

from companion import ddpm, denoiser, ode, samplers, sde
from companion.core.gmm import lab_2d

GM = lab_2d()
DEN = samplers.gmm_denoiser(GM)
SIG = ode.sigma_grid(6, 0.05, 5.0)
X = 5.0 * torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _half(fn, dtype):
    return lambda x, s: fn(x, s).to(dtype)


def test_generator_none_draws_from_the_global_generator():
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(samplers.sample_euler_ancestral(DEN, X, SIG, generator=None)[0])
    assert torch.equal(runs[0], runs[1])  # the global seed decides the noise ...
    assert not torch.equal(runs[0], runs[2])  # ... and it is noise: another seed, another result
    vp = sde.VPSDE()
    torch.manual_seed(3)
    a = sde.reverse_sample(vp, vp.exact_score(GM), X, steps=4, generator=None)[0]
    torch.manual_seed(3)
    assert torch.equal(a, sde.reverse_sample(vp, vp.exact_score(GM), X, steps=4, generator=None)[0])


def test_a_seed_that_makes_a_result_reproducible_still_refuses_none():
    from companion import data

    with pytest.raises(ValueError, match="seed must be an int"):
        data.digits("train", seed=None)


@pytest.mark.parametrize("name", ["sample_dpmpp_2m", "sample_unipc", "sample_lms", "sample_heun_churn"])
def test_empty_batch_gives_an_empty_result(name):
    out, info = getattr(samplers, name)(DEN, X[:0], SIG)
    assert out.shape == (0, 2) and out.dtype == X.dtype
    assert ode.sample_heun(ode.gmm_score_fn(GM), X[:0], SIG)[0].shape == (0, 2)
    assert denoiser.generate(denoiser.digits_denoiser(0, ch=8), "DDIM", 4, 0, 0).shape == (0, 1, 8, 8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_network_output_is_cast_to_the_state(dtype):
    ref, _ = samplers.sample_dpmpp_2m(DEN, X, SIG)
    out, _ = samplers.sample_dpmpp_2m(_half(DEN, dtype), X, SIG)
    assert out.dtype == torch.float64
    # the only difference is the rounding of the denoiser's output: relative 2^-8 (bf16) or
    # 2^-11 (fp16) per call, carried through 6 steps of a contracting ODE
    eps = torch.finfo(dtype).eps
    assert (out - ref).abs().max() < 6 * eps * ref.abs().max()
    assert (out - ref).abs().max() > 0  # the half-precision path was taken
    sched = ddpm.DiscreteSchedule.linear(50).subsequence(5)
    eps_model = ddpm.exact_eps_model(GM, ddpm.DiscreteSchedule.linear(50))
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = ddpm.sample(lambda x, t: eps_model(x, t).to(dtype), sched, x_T, eta=0.0)
    assert y.dtype == torch.float64 and torch.isfinite(y).all()


def test_half_precision_state_is_refused_clearly():
    with pytest.raises(TypeError, match="only float32 and float64"):
        samplers.sample_dpmpp_2m(DEN, X.half(), SIG)


def test_generate_runs_every_digits_sampler_on_the_model_device():
    """``generate`` builds no CPU-only tensor in the chain: with the network on the ``meta`` device
    every sampler runs there (a CPU tensor met on the way would raise a device mismatch)."""
    from companion import denoiser as dn

    model = dn.digits_denoiser(0).to("meta")
    # the predictor-corrector's Langevin step size is a number read from the score's norm (.item()):
    # it runs on any real device, but a meta tensor has no value to read
    for sampler in (s for s in dn.DIGITS_SAMPLERS if s != "predictor-corrector (VP)"):
        nfe = 4
        y = dn.generate(model, sampler, nfe, 3, 0)
        assert y.device.type == "meta" and y.shape == (3, 1, 8, 8), sampler
    cpu = dn.digits_denoiser(0)
    assert torch.equal(dn.generate(cpu, "Euler ancestral", 4, 3, 5), dn.generate(cpu, "Euler ancestral", 4, 3, 5, device="cpu"))
