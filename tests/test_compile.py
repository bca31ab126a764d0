"""``torch.compile`` of the book's networks: the input checks step aside while torch traces
(:func:`companion.core.utils.checking`), so a compiled net runs inside the samplers and gives what
the eager net gives. The backends used here trace the graph without generating C++ code."""

import pytest
import torch

from companion import denoiser as dn
from companion import nets, ode, samplers, utils


def _scorenet(net: torch.nn.Module) -> ode.ScoreNet:
    torch.manual_seed(0)
    for p in net.parameters():  # the output layers start at zero: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    return ode.ScoreNet(net, sigma_data=0.5).eval()


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("kind", ["UNet", "TimeMLP"])
def test_compiled_net_runs_a_sampler_step_as_the_eager_net(kind, backend):
    torch._dynamo.reset()
    net = nets.UNet(ch=8) if kind == "UNet" else nets.TimeMLP(dim=4, hidden=16, depth=2)
    model = _scorenet(net)
    shape = (6, 1, 8, 8) if kind == "UNet" else (6, 4)
    x = 3.0 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    sig = torch.tensor([3.0, 1.0, 0.3])
    eager, _ = samplers.sample_dpmpp_2m(dn.denoiser_fn(model), x, sig)

    model.net = torch.compile(net, backend=backend)  # what the issue did: torch.compile(model.net)
    compiled, info = samplers.sample_dpmpp_2m(dn.denoiser_fn(model), x, sig)
    assert info["nfe"] == 2
    # same float32 operations in the same order (no code generation): agreement to rounding
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    assert (eager - x).abs().max() > 0.1  # the step did move x: the comparison is not between two copies of x


def test_checks_step_aside_only_while_tracing():
    assert utils.checking()
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        nets.TimeMLP(dim=2, hidden=8, depth=1)(torch.zeros(3, 2), torch.zeros(4))

    seen = []

    def f(x):
        seen.append(utils.checking())
        return x + 1

    torch._dynamo.reset()
    torch.compile(f, backend="eager")(torch.zeros(2))
    assert seen == [False]
