"""Small shared helpers: input validation, shape helpers, seeding, and source display.

Every public function of ``companion`` validates its inputs with the ``check_*`` helpers
below, so that a wrong shape, dtype or range raises a ``ValueError``/``TypeError`` whose
message names the offending argument and says what was expected.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Scalar = float | int | torch.Tensor


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so that ``x`` (shape ``(B,)``) broadcasts against a
    tensor with ``ndim`` dimensions, e.g. ``(B,) -> (B, 1, 1, 1)`` for images.

    This is k-diffusion's habit: per-sample scalars never get hard-coded ``[:, None, None]``.
    """
    extra = ndim - x.ndim
    if extra < 0:
        raise ValueError(f"append_dims: x has {x.ndim} dims, more than the target ndim={ndim}")
    return x[(...,) + (None,) * extra]


def check_tensor(
    name: str,
    x: Any,
    *,
    ndim: int | tuple[int, ...] | None = None,
    floating: bool = True,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor (optionally floating, finite, with ``ndim`` dims)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32/float64), got {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dims, got shape {tuple(x.shape)}"
            )
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_points(name: str, x: Any, dim: int) -> torch.Tensor:
    """Check that ``x`` is a floating tensor of points of shape ``(n, dim)``."""
    x = check_tensor(name, x, ndim=2)
    if x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {tuple(x.shape)}")
    return x


def check_batch(name: str, x: Any, *, min_ndim: int = 1) -> torch.Tensor:
    """Check that ``x`` is a finite floating tensor ``(n, ...)`` with a non-empty batch dimension
    and at least ``min_ndim`` dims."""
    x = check_tensor(name, x)
    if x.ndim < min_ndim or x.ndim == 0 or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have a non-empty batch dimension and at least {max(min_ndim, 1)} dims "
            f"(n, ...), got shape {tuple(x.shape)}"
        )
    return x


def require_generator(generator: Any, name: str = "generator") -> torch.Generator:
    """For random operations: accept a ``torch.Generator`` or an int seed, refuse ``None``."""
    if generator is None:
        raise ValueError(f"this computation is random: pass {name}= (a torch.Generator or an int seed)")
    if isinstance(generator, bool) or not isinstance(generator, (torch.Generator, int)):
        raise TypeError(f"{name} must be a torch.Generator or an int seed, got {type(generator).__name__}")
    return make_generator(generator)


def check_positive(name: str, value: Scalar, *, allow_zero: bool = False) -> float:
    """Check that a scalar is (strictly, unless ``allow_zero``) positive; return it as float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rel}, got {value}")
    return value


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Check that ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def make_generator(seed: int | torch.Generator | None, device: str | torch.device = "cpu"):
    """Return a ``torch.Generator``: pass one through, or seed a new one from an int."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (used for weight init in notebooks)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - notebooks may use the legacy global API
    torch.manual_seed(seed)


def show_source(obj: Callable | type) -> Any:
    """Display the source of a companion function or class in a notebook.

    Returns an ``IPython.display.Markdown`` object (a fenced Python block) when IPython is
    available, else the source string. Notebooks use it to put the implementation next to
    the equation it implements, without copying code.
    """
    src = inspect.getsource(obj)
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - IPython ships with the book's environment
        return src
    module = getattr(obj, "__module__", "")
    return Markdown(f"`{module}.{obj.__qualname__}`\n\n```python\n{src}```")
