"""Exact checks of companion.sequence.positions that mutation testing showed were missing: the Beta
position sampler's law, the task loss on hand-built logits, and one Pre-LN block written out."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from companion import positions as P


def test_beta_positions_law():
    """Positions are a grid 0, nu, 2 nu, ... scaled by (L - 1), nu ~ Beta(alpha, alpha (L - T) / (T - 1)),
    so E[last position] = T - 1 and Var[last] = (L - 1)^2 Var[nu]; one token sits at position 0."""
    g = torch.Generator().manual_seed(0)
    assert torch.equal(P.beta_positions(3, 1, 16, generator=g), torch.zeros(3, 1))
    n, T, L, alpha = 20_000, 8, 64, 1.0
    pos = P.beta_positions(n, T, L, generator=g, alpha=alpha, dtype=torch.float64)
    assert pos.shape == (n, T) and (pos[:, 0] == 0).all()
    steps = pos.diff(dim=1)
    assert (steps - steps[:, :1]).abs().max() < 1e-9            # equally spaced
    b = alpha * (L - T) / (T - 1)
    var_nu = alpha * b / ((alpha + b) ** 2 * (alpha + b + 1))
    last = pos[:, -1]
    se = math.sqrt((L - 1) ** 2 * var_nu / n)
    assert abs(last.mean().item() - (T - 1)) < 4 * se
    assert abs(last.var().item() / ((L - 1) ** 2 * var_nu) - 1) < 0.06   # SE of a variance ~ 2.3 % here
    assert last.max() <= L - 1


class _Fixed(torch.nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, tokens, positions):
        return self.logits


def test_task_loss_on_hand_built_logits():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    targets = torch.tensor([[0, P.IGNORE], [1, 2]])
    tokens = torch.zeros(2, 2, dtype=torch.long)
    loss = P.task_loss(_Fixed(logits), tokens, targets, torch.zeros(2, 2))
    ce = [-(math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))),
          -(math.log(math.e / (2 + math.e))), -math.log(1 / 3)]
    assert abs(loss.item() - sum(ce) / 3) < 1e-6


def test_pre_ln_block_written_out():
    torch.manual_seed(0)
    blk = P._Block(8, 2, rope=False, rope_base=10000.0).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h = F.layer_norm(x, (8,), blk.ln1.weight, blk.ln1.bias, blk.ln1.eps)
    q, k, v = (h @ blk.qkv.weight[i * 8:(i + 1) * 8].T + blk.qkv.bias[i * 8:(i + 1) * 8] for i in range(3))
    heads = []
    for hi in range(2):
        sl = slice(4 * hi, 4 * hi + 4)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)   # sqrt(d_head) = 2
        heads.append(w @ v[..., sl])
    x1 = x + torch.cat(heads, -1) @ blk.out.weight.T + blk.out.bias
    h2 = F.layer_norm(x1, (8,), blk.ln2.weight, blk.ln2.bias, blk.ln2.eps)
    ref = x1 + blk.ffn[2](F.gelu(blk.ffn[0](h2)))
    pos = torch.arange(5, dtype=torch.float64).expand(2, 5)
    torch.testing.assert_close(blk(x, pos, None), ref, rtol=0, atol=1e-12)


def test_make_sampler_defaults_and_smallest_table():
    """'random' draws sorted distinct positions in [0, max_len - 1], max_len = 256 by default; a
    one-row table (max_len = 1) is a valid size for the deterministic samplers."""
    g = torch.Generator().manual_seed(0)
    pos = P.make_sampler("random")(2000, 8, g)
    assert pos.min() >= 0 and pos.max() == 255
    assert torch.equal(P.make_sampler("random", 256)(5, 8, torch.Generator().manual_seed(3)),
                       P.make_sampler("random")(5, 8, torch.Generator().manual_seed(3)))
    assert torch.equal(P.make_sampler("plain", max_len=1)(2, 3, g), P.plain_positions(2, 3))
