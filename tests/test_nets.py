"""Networks: shapes, time handling, input validation, gradients."""

import pytest
import torch

from companion.nets import DigitClassifier, DigitsConvNet, SinusoidalEmbedding, TimeMLP


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


def test_digits_convnet_shapes_and_gradients():
    torch.manual_seed(0)
    net = DigitsConvNet(ch=16)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    y = net(x, torch.tensor([1.0, 5.0, 50.0]))
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1, 8, 8\)"):
        net(torch.randn(3, 1, 7, 7), 1.0)


def test_digit_classifier_shapes():
    c = DigitClassifier()
    x = torch.randn(4, 1, 8, 8)
    assert c(x).shape == (4, 10) and c.features(x).shape == (4, 64)
