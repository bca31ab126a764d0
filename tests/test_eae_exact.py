"""Exact checks of companion.sequence.eae that mutation testing showed were missing: the documented default
sizes, the VAE's reconstruction term by hand, and the AE + BN baseline (lam = 0) needing no
entropy estimate."""

from __future__ import annotations

import torch

from companion import eae


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _widths(seq: torch.nn.Sequential) -> list[int]:
    lin = [m for m in seq.modules() if isinstance(m, torch.nn.Linear)]
    return [lin[0].in_features] + [m.out_features for m in lin]


def test_documented_default_sizes():
    """EAE(): 8x8 images, 8 latent coordinates, 256 hidden units, batch-norm momentum 0.05; the
    VAE's head gives a mean and a log-variance per latent coordinate."""
    m = eae.EAE()
    assert m.x_shape == (1, 8, 8) and m.latent == 8
    assert _widths(m.encoder) == [64, 256, 256, 8]
    assert _widths(m.decoder) == [8, 256, 256, 64]
    assert m.bn.momentum == 0.05 and m.bn.affine is False
    v = eae.VAE()
    assert v.x_shape == (1, 8, 8) and v.latent == 8
    assert _widths(v.encoder) == [64, 256, 256, 16]
    assert _widths(v.decoder) == [8, 256, 256, 64]


def test_vae_loss_reconstruction_by_hand():
    """rec = (1/n) sum_i ||x_i - D(z_i)||^2 with the generator's reparameterized codes; the loss is
    rec + beta KL; a one-example batch gives the same per-example value as that example in a batch."""
    torch.manual_seed(3)
    model = eae.VAE(latent=3, hidden=16)
    x = torch.rand(6, 1, 8, 8, generator=_gen(5)) * 2 - 1
    loss, parts = eae.vae_loss(model, x, _gen(9), beta=0.5, return_parts=True)
    x_rec, mean, log_var = model(x, _gen(9))
    rec = sum(((x_rec[i] - x[i]) ** 2).sum().item() for i in range(6)) / 6
    kl = sum(0.5 * (mean[i] ** 2 + log_var[i].exp() - 1 - log_var[i]).sum().item() for i in range(6)) / 6
    assert abs(parts["rec"] - rec) < 1e-5 * rec
    assert abs(parts["kl"] - kl) < 1e-5 * max(kl, 1.0)
    assert abs(loss.item() - (rec + 0.5 * kl)) < 1e-5 * (rec + kl)


def test_eae_loss_rec_by_hand_per_example():
    torch.manual_seed(4)
    model = eae.EAE(latent=3, hidden=16)
    x = torch.rand(7, 1, 8, 8, generator=_gen(6)) * 2 - 1
    loss = eae.eae_loss(model, x, lam=0.0)
    x_rec, _ = model(x)
    rec = sum(((x_rec[i] - x[i]) ** 2).sum().item() for i in range(7)) / 7
    assert abs(loss.item() - rec) < 1e-5 * rec


def test_ae_bn_baseline_needs_no_entropy_estimate():
    """lam = 0 is the plain AE + BN loss: it must not estimate an entropy, so a batch whose codes
    all coincide (identical examples) is fine, while lam > 0 refuses it (k >= distinct points)."""
    torch.manual_seed(5)
    model = eae.EAE(latent=3, hidden=16)
    x = torch.full((4, 1, 8, 8), 0.3)
    loss = eae.eae_loss(model, x, lam=0.0)
    x_rec, _ = model(x)
    assert abs(loss.item() - ((x_rec - x) ** 2).sum((1, 2, 3)).mean().item()) < 1e-6
    try:
        eae.eae_loss(model, x, lam=1.0)
    except ValueError as e:
        assert "k must be < n" in str(e)
    else:
        raise AssertionError("an entropy of one distinct code must be refused")


def test_smallest_sizes_are_accepted():
    """A one-layer mlp (two widths) and one hidden unit are valid sizes."""
    net = eae.mlp([3, 4])
    assert [type(m) for m in net] == [torch.nn.Linear] and net[0].in_features == 3 and net[0].out_features == 4
    m = eae.EAE(latent=2, hidden=1)
    assert _widths(m.encoder) == [64, 1, 1, 2]
    assert eae.VAE(latent=2, hidden=1)(torch.zeros(3, 1, 8, 8), 0)[0].shape == (3, 1, 8, 8)


def test_ex_post_gmm_defaults_are_ten_components_and_seed_zero():
    torch.manual_seed(6)
    model = eae.EAE(latent=2, hidden=8).eval()
    x = torch.rand(60, 1, 8, 8, generator=_gen(7)) * 2 - 1
    a = eae.ExPostGMM(model, x)
    b = eae.ExPostGMM(model, x, components=10, seed=0)
    assert a.weights.shape == (10,)
    assert torch.equal(a.means, b.means) and torch.equal(a.weights, b.weights)
