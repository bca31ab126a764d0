"""A model of the wrong kind is refused at the sampler's entry, with the converter named.

Five conventions meet in the book: denoisers D(x, sigma), scores in sigma, scores of an SDE in its
time t, noise predictors of a discrete chain, and ScoreNet, whose call returns a score. Each
converter tags what it returns; each sampler family checks the tag (plain callables pass)."""

import pytest
import torch

from companion import DiscreteSchedule, ddpm, lab_2d, ode
from companion import denoiser as dn
from companion import samplers as S
from companion.diffusion.sde import VPSDE, reverse_sample


@pytest.fixture(scope="module")
def models():
    gm = lab_2d()
    net = dn.digits_denoiser(0, ch=8)
    return {"gm": gm, "score": ode.gmm_score_fn(gm), "denoiser": S.gmm_denoiser(gm), "scorenet": net,
            "sde_score": VPSDE().exact_score(gm), "eps": ddpm.exact_eps_model(gm, DiscreteSchedule.su(100))}


def test_a_scorenet_is_refused_where_a_denoiser_is_expected(models):
    x = torch.randn(2, 1, 8, 8)
    grid = ode.sigma_grid(4, 0.01, 10.0, dtype=torch.float32)
    with pytest.raises(TypeError, match="denoiser_fn"):
        S.sample_dpmpp_2m(models["scorenet"], x, grid)
    out, _ = S.sample_dpmpp_2m(dn.denoiser_fn(models["scorenet"]), x, grid)   # the converter works
    assert out.shape == x.shape


def test_a_denoiser_is_refused_where_a_score_is_expected(models):
    x = models["gm"].noised(1, 10.0).sample(3, 0)
    grid = ode.sigma_grid(4, 0.01, 10.0)
    with pytest.raises(TypeError, match="score_from_denoiser"):
        ode.sample_heun(models["denoiser"], x, grid)
    a, _ = ode.sample_heun(S.score_from_denoiser(models["denoiser"]), x, grid)
    b, _ = ode.sample_heun(models["score"], x, grid)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)   # the round trip is the same score


def test_a_score_is_refused_where_a_denoiser_is_expected(models):
    x = models["gm"].noised(1, 10.0).sample(3, 0)
    with pytest.raises(TypeError, match="denoiser_from_score"):
        S.sample_dpmpp_2m(models["score"], x, ode.sigma_grid(4, 0.01, 10.0))


def test_kinds_across_chapters(models):
    x = models["gm"].noised(1, 10.0).sample(3, 0)
    with pytest.raises(TypeError, match="SDE in its time t"):
        ode.sample_euler(models["sde_score"], x, ode.sigma_grid(3, 0.01, 10.0))
    with pytest.raises(TypeError, match="noise predictor"):
        reverse_sample(VPSDE(), models["eps"], x, steps=3, generator=0)
    with pytest.raises(TypeError, match="eps_model"):
        ddpm.sample(models["scorenet"], DiscreteSchedule.su(100).subsequence(5), torch.randn(2, 1, 8, 8))
    with pytest.raises(TypeError, match="vp_score"):
        reverse_sample(VPSDE(), models["scorenet"], torch.randn(2, 1, 8, 8), steps=3, generator=0)
    # plain callables carry no tag and pass
    y, _ = S.sample_dpmpp_2m(lambda z, s: models["denoiser"](z, s), x, ode.sigma_grid(3, 0.01, 10.0))
    assert y.shape == x.shape


def test_samplers_keep_no_autograd_graph_and_draw_noise_on_the_device_of_x(models):
    """Samplers run without autograd (no graph kept across steps), and an int seed makes the
    generator on x's device (the meta device creates no data: any CPU-only tensor would fail)."""
    x = models["gm"].noised(1, 10.0).sample(3, 0).requires_grad_(True)
    grid = ode.sigma_grid(4, 0.01, 10.0)
    for run in (lambda: S.sample_dpmpp_2m(models["denoiser"], x, grid),
                lambda: S.sample_euler_ancestral(models["denoiser"], x, grid, generator=0),
                lambda: S.sample_dpmpp_2m_sde(models["denoiser"], x, grid, generator=0)):
        y, _ = run()
        assert not y.requires_grad and y.grad_fn is None
    xm = torch.empty(3, 2, device="meta")
    den_meta = lambda z, s: z * 0.5                          # noqa: E731
    for run in (lambda: S.sample_euler_ancestral(den_meta, xm, grid, generator=0),
                lambda: S.sample_dpmpp_2m_sde(den_meta, xm, grid, generator=0),
                lambda: S.sample_heun_churn(den_meta, xm, grid, generator=0, s_churn=1.0),
                lambda: S.sample_dpmpp_2m(den_meta, xm, grid),
                lambda: S.sample_unipc(den_meta, xm, grid),
                lambda: S.sample_lms(den_meta, xm, grid)):
        y, _ = run()
        assert y.device.type == "meta"
