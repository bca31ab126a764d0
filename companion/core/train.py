"""One training loop for every chapter: seeded, with a tqdm bar, EMA and a loss history."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .utils import check_int, check_positive, check_tensor, seed_generator
from .utils import progress as progress_bar

__all__ = ["EMA", "FitResult", "fit", "batches", "profile_step"]


class EMA:
    r"""Exponential moving average of a model's parameters, :math:`\bar\theta\leftarrow d_i\,\bar\theta+(1-d_i)\theta`.

    With ``warmup=True`` the decay at update ``i`` is :math:`d_i=\min(d,\,(1+i)/(10+i))`, so a
    short run does not keep a large share of the random initial weights (without it, after
    2000 updates at :math:`d=0.999` they still weigh :math:`0.999^{2000}\approx13\%`).
    ``ema.model`` is a frozen copy used for evaluation; buffers (e.g. batch-norm statistics)
    are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_params: list[torch.Tensor] = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("model does not have the parameters of the EMA copy")
        torch._foreach_lerp_(ema_params, params, 1 - d)  # one fused update for all tensors
        for be, b in zip(self.model.buffers(), model.buffers(), strict=True):
            be.copy_(b)


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained ``model``, its EMA copy and the per-step losses."""

    model: nn.Module
    ema: nn.Module
    losses: list[float] = field(default_factory=list)

    def smoothed(self, window: int = 50) -> torch.Tensor:
        """Running mean of the loss history over ``window`` consecutive steps (for plots); the raw
        history when it is shorter than the window."""
        window = check_int("window", window, minimum=1)
        x = torch.tensor(self.losses, dtype=torch.float64)
        if len(x) < window:
            return x
        c = torch.cumsum(torch.cat([torch.zeros(1, dtype=x.dtype), x]), 0)
        return (c[window:] - c[:-window]) / window


def batches(data: torch.Tensor, batch_size: int, generator: torch.Generator | None, replace: bool = True):
    """Endless random mini-batches of the rows of ``data``: drawn with replacement, or (with
    ``replace=False``) without any repeated row inside a batch."""
    data = check_tensor("data", data, floating=False)
    if data.ndim < 1 or data.shape[0] == 0:
        raise ValueError(f"data must hold at least one example (n, ...), got shape {tuple(data.shape)}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (the global one), got {type(generator).__name__}")
    n = data.shape[0]
    if not replace and batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the number of rows {n} (replace=False)")
    while True:
        if replace:
            idx = torch.randint(0, n, (batch_size,), generator=generator)
        else:
            idx = torch.randperm(n, generator=generator)[:batch_size]
        yield data[idx]


def fit(
    model: nn.Module,
    loss_fn: Callable[[Any, Any, torch.Generator], torch.Tensor],
    data: torch.Tensor | Callable[[int, torch.Generator], Any],
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    ema_decay: float | None = 0.999,
    weight_decay: float = 0.0,
    replace: bool = True,
    grad_clip: float | None = 1.0,
    warmup: int = 0,
    cosine: bool = True,
    progress: bool = True,
    desc: str = "training",
) -> FitResult:
    """Train ``model`` with Adam(W) on ``loss_fn(model, batch, generator)``.

    Args:
        model: the network; its initial weights are the caller's (seed before building it).
        loss_fn: returns a scalar loss; draws its own randomness (times, noise) from the
            generator it receives, so runs are reproducible.
        data: a tensor of examples ``(N, ...)`` (mini-batches drawn with replacement), or a
            callable ``(batch_size, generator) -> batch`` for laws we can sample exactly.
        steps, batch_size, lr, weight_decay: optimisation settings.
        replace: for tensor ``data``, draw each batch with replacement (default) or without
            (no repeated example inside a batch, e.g. for batch-level entropy estimates).
        seed: seeds the generator passed to ``loss_fn`` and used for batches.
        ema_decay: decay of the parameter EMA (returned as ``FitResult.ema``; warm-up as in
            :class:`EMA`); ``None`` skips the EMA and ``FitResult.ema`` is the model itself.
        grad_clip: max gradient norm (``None`` disables clipping).
        warmup, cosine: linear warm-up steps, then cosine decay to 10 % of ``lr`` if ``cosine``.
        progress: show a ``tqdm`` bar (the loss is refreshed every 1 % of the steps).
    """
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_positive("lr", lr)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters: there is nothing to fit")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable (model, batch, generator) -> scalar loss")
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    warmup = check_int("warmup", warmup, minimum=0)
    if grad_clip is not None:
        grad_clip = check_positive("grad_clip", grad_clip)  # 0 would freeze the weights, < 0 climb the loss
    if ema_decay is not None and not (isinstance(ema_decay, (int, float)) and not isinstance(ema_decay, bool)
                                      and 0 <= ema_decay < 1):
        raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay!r}")
    for name, flag in (("replace", replace), ("cosine", cosine), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    g = seed_generator(seed)
    if isinstance(data, torch.Tensor):
        if data.ndim < 1 or data.shape[0] == 0:
            raise ValueError(f"data must hold at least one example (n, ...), got shape {tuple(data.shape)}")
        if data.is_floating_point() and not torch.isfinite(data).all():
            raise ValueError("data contains NaN or infinite values")
        if not replace and data.shape[0] < batch_size:
            raise ValueError(f"replace=False needs at least batch_size={batch_size} examples, got {data.shape[0]}")
        stream = batches(data, batch_size, g, replace)
        draw = lambda: next(stream)
    elif callable(data):
        draw = lambda: data(batch_size, g)
    else:
        raise TypeError("data must be a tensor of examples or a callable (batch_size, generator) -> batch")

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_factor(i: int) -> float:
        if warmup and i < warmup:
            return (i + 1) / warmup
        if not cosine:
            return 1.0
        frac = (i - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * frac)).item())

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    losses: list[float] = []
    model.train()
    bar = progress_bar(range(steps), desc=desc, disable=not progress)
    every = max(1, steps // 100)
    for i in bar:
        loss = loss_fn(model, draw(), g)
        if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
            raise TypeError(f"loss_fn must return a floating scalar tensor (with a graph), got {type(loss).__name__}")
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {i}; lower lr or check the data")
        if not loss.requires_grad:
            raise ValueError("loss_fn returned a loss that does not depend on the model's parameters")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        if i % every == 0:
            bar.set_postfix(loss=f"{sum(losses[-every:]) / len(losses[-every:]):.4f}", refresh=False)
    model.eval()
    return FitResult(model=model, ema=ema.model if ema is not None else model, losses=losses)


def profile_step(model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
                 data: torch.Tensor, *, batch_size: int = 128, repeats: int = 20, seed: int = 0) -> dict[str, float]:
    """Where one training step of :func:`fit` spends its time, in milliseconds per step (median of
    ``repeats`` steps after two warm-up steps): drawing the batch, the loss (its own noise draws and
    the forward pass), the backward pass, the optimiser step and the EMA update. Trains a copy of
    ``model``, which is left untouched."""
    import time

    repeats = check_int("repeats", repeats, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    work = copy.deepcopy(model).train()
    g = seed_generator(seed)
    stream = batches(data, batch_size, g)
    opt = torch.optim.AdamW(work.parameters(), lr=1e-4)
    ema = EMA(work, 0.999)
    parts: dict[str, list[float]] = {k: [] for k in ("batch", "loss", "backward", "optimiser", "ema")}
    for i in range(repeats + 2):
        t = [time.perf_counter()]
        b = next(stream)
        t.append(time.perf_counter())
        loss = loss_fn(work, b, g)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        ema.update(work)
        t.append(time.perf_counter())
        if i >= 2:
            for k, a, z in zip(parts, t[:-1], t[1:], strict=True):
                parts[k].append(1e3 * (z - a))
    return {k: float(torch.tensor(v).median()) for k, v in parts.items()}
