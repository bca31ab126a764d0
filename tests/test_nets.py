"""Networks: shapes, time handling, input validation, gradients."""

import pytest
import torch

from companion.core.nets import DigitClassifier, SinusoidalEmbedding, TimeMLP, UNet


def test_sinusoidal_embedding_shape_and_range():
    e = SinusoidalEmbedding(16)(torch.linspace(0, 1, 5))
    assert e.shape == (5, 16) and e.abs().max() <= 1


def test_time_mlp_accepts_float_or_vector_time():
    torch.manual_seed(0)
    net = TimeMLP(dim=2, hidden=32, depth=2)
    x = torch.randn(7, 2)
    a = net(x, 0.3)
    b = net(x, torch.full((7,), 0.3))
    torch.testing.assert_close(a, b)
    assert a.shape == (7, 2)
    assert not torch.allclose(net(x, 0.3), net(x, 0.9))  # time matters


def test_time_mlp_validation():
    net = TimeMLP(dim=2)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        net(torch.randn(4, 3), 0.1)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        net(torch.randn(4, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        net(torch.randn(4, 2), "0.1")
    with pytest.raises(ValueError, match="dim must be even"):
        SinusoidalEmbedding(5)


def test_unet_shapes_gradients_and_identity_start():
    torch.manual_seed(0)
    for mult, size in (((1, 2), (8, 8)), ((1, 2, 2), (12, 16)), ((1,), (5, 7))):
        net = UNet(in_ch=2, ch=8, mult=mult, blocks=2)
        x = torch.randn(3, 2, *size, requires_grad=True)
        y = net(x, torch.tensor([-1.0, 0.0, 1.5]))
        assert y.shape == x.shape
        assert y.abs().max() == 0  # the output layer starts at zero: F = 0, so D(x) = c_skip x at init
        for p in net.parameters():
            p.data += 0.01 * torch.randn_like(p)
        net(x, 0.3).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1, H, W\) with H and W divisible by 2"):
        UNet(ch=8)(torch.randn(3, 1, 7, 7), 1.0)
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(TypeError, match="mult"):
        UNet(mult=())


def test_unet_is_translation_equivariant_in_the_interior():
    """A conv net with zero padding: shifting a compact blob in the interior shifts the output."""
    torch.manual_seed(0)
    net = UNet(ch=8, mult=(1,))
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    x = torch.zeros(1, 1, 48, 48, dtype=torch.float64)
    x[0, 0, 20:23, 20:23] = torch.randn(3, 3, dtype=torch.float64)
    net = net.double()
    y, y_shift = net(x, 0.2), net(torch.roll(x, (3, 2), (2, 3)), 0.2)
    torch.testing.assert_close(torch.roll(y, (3, 2), (2, 3))[..., 12:36, 12:36], y_shift[..., 12:36, 12:36])
    assert (y - y_shift).abs().max() > 1e-3  # and the output does depend on where the blob is


def test_digit_classifier_shapes():
    c = DigitClassifier()
    x = torch.randn(4, 1, 8, 8)
    assert c(x).shape == (4, 10) and c.features(x).shape == (4, 64)


def test_networks_refuse_non_finite_empty_or_half_inputs():
    net, conv = TimeMLP(dim=2, hidden=8, depth=1), UNet(ch=8)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net(x.masked_fill(x > 0, float("nan")), 0.1)
    with pytest.raises(ValueError, match="t contains NaN"):
        net(x, float("inf"))
    with pytest.raises(ValueError, match="t contains NaN"):
        net(x, torch.tensor([0.1, float("nan"), 0.2, 0.3]))
    with pytest.raises(TypeError, match="t must be a real"):
        net(x, torch.ones(4, dtype=torch.bool))
    assert net(torch.zeros(0, 2), 0.1).shape == (0, 2)  # an empty batch, as in torch
    with pytest.raises(TypeError, match="half precision"):
        net(x.half(), 0.1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        conv(torch.full((2, 1, 8, 8), float("inf")), 1.0)
    with pytest.raises(ValueError, match="time_scale"):
        TimeMLP(time_scale=float("nan"))
    with pytest.raises(ValueError, match="time_scale"):
        UNet(time_scale=0.0)
    with pytest.raises(ValueError, match="max_freq"):
        SinusoidalEmbedding(8, max_freq=-1.0)
    with pytest.raises(ValueError, match="t must have 1 dims"):
        SinusoidalEmbedding(8)(torch.zeros(2, 2))


def test_sinusoidal_embedding_values():
    """Closed form: frequencies geometric from 1 to max_freq, sin block then cos block."""
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    e = SinusoidalEmbedding(6, max_freq=100.0)(t)
    w = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    ref = torch.cat([torch.sin(t[:, None] * w), torch.cos(t[:, None] * w)], 1)
    assert (e - ref).abs().max() < 1e-5
    # time_scale multiplies the time before the embedding
    torch.manual_seed(0)
    a = TimeMLP(dim=2, hidden=8, depth=1, time_scale=0.5)
    torch.manual_seed(0)
    b = TimeMLP(dim=2, hidden=8, depth=1, time_scale=1.0)
    x = torch.randn(3, 2)
    torch.testing.assert_close(a(x, 0.8), b(x, 0.4))


def test_default_embedding_frequencies_and_conv_time_scale():
    e = SinusoidalEmbedding(8)
    assert torch.allclose(e.freqs[[0, -1]], torch.tensor([1.0, 1000.0]))
    # the embedding sees t * time_scale (its output barely moves at initialisation, so read its input)
    for net, x in ((UNet(ch=8, time_scale=0.25), torch.randn(2, 1, 8, 8)),
                   (TimeMLP(dim=2, hidden=8, depth=1, time_scale=0.25), torch.randn(2, 2))):
        seen = []
        net.embed.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(inp[0]))
        net(x, torch.tensor([0.8, 2.0]))
        torch.testing.assert_close(seen[0], torch.tensor([0.2, 0.5]), rtol=0, atol=1e-7)
