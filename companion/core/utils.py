"""Small shared helpers: input validation, shape helpers, seeding and progress bars.

Every public function of ``companion`` validates its inputs with the ``check_*`` helpers
below, so that a wrong shape, dtype or range raises a ``ValueError``/``TypeError`` whose
message names the offending argument and says what was expected.

The checks accept what torch accepts: ``generator=None`` draws from torch's global generator,
an empty batch ``(0, ...)`` is a batch (where the result is per sample), and a network may return
half precision (the samplers cast its output to their float32/float64 state). While
``torch.compile`` traces (:func:`checking`), the checks are skipped: they branch on values.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

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


def checking() -> bool:
    """Whether the input checks run: always, except while ``torch.compile`` traces a function
    (a check branches on tensor values, which would break or specialise the compiled graph)."""
    return not torch.compiler.is_compiling()


def check_tensor(
    name: str,
    x: Any,
    *,
    ndim: int | tuple[int, ...] | None = None,
    floating: bool = True,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor (optionally floating, finite, with ``ndim`` dims)."""
    if not checking():
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32/float64), got {x.dtype}")
    if floating and x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} has dtype {x.dtype}: only float32 and float64 are supported "
                        "(half precision is too coarse for these computations)")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dims, got shape {tuple(x.shape)}"
            )
    if finite and x.is_floating_point() and not _is_meta(x) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def state_dtype(out: Any, like: torch.Tensor) -> Any:
    """A model's output in the dtype of the sampler state ``like``: a network under autocast may
    return float16/bfloat16, while the state stays in float32/float64. Anything else is returned
    unchanged, for the caller's own check."""
    if isinstance(out, torch.Tensor) and out.dtype in (torch.float16, torch.bfloat16) and out.dtype != like.dtype:
        return out.to(like.dtype)
    return out


def _is_meta(x: torch.Tensor) -> bool:
    """Tensors on the meta device carry no values: value checks are skipped for them."""
    return x.device.type == "meta"


def check_points(name: str, x: Any, dim: int) -> torch.Tensor:
    """Check that ``x`` is a floating tensor of points of shape ``(n, dim)``."""
    x = check_tensor(name, x, ndim=2)
    if checking() and x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {tuple(x.shape)}")
    return x


def check_batch(name: str, x: Any, *, min_ndim: int = 1, allow_empty: bool = False) -> torch.Tensor:
    """Check that ``x`` is a finite floating tensor ``(n, ...)`` with at least ``min_ndim`` dims
    and a non-empty batch dimension; ``allow_empty`` accepts ``n = 0`` (for a computation that is
    per sample, where an empty batch gives an empty result, as in torch)."""
    x = check_tensor(name, x)
    if checking() and (x.ndim < min_ndim or x.ndim == 0 or (x.shape[0] < 1 and not allow_empty)):
        what = "a batch dimension" if allow_empty else "a non-empty batch dimension"
        raise ValueError(
            f"{name} must have {what} and at least {max(min_ndim, 1)} dims "
            f"(n, ...), got shape {tuple(x.shape)}"
        )
    return x


def require_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """For random operations: a ``torch.Generator``, an int seed, or ``None`` (torch's global
    generator, as in torch); see :func:`make_generator`."""
    return make_generator(generator, name=name)


def check_positive(name: str, value: Scalar, *, allow_zero: bool = False) -> float:
    """Check that a scalar is (strictly, unless ``allow_zero``) positive; return it as float."""
    if not checking():
        return value  # type: ignore[return-value]  # a traced value stays symbolic
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


#: The largest number of steps (grid points, schedule length) a sampler or schedule accepts. A
#: grid of ``MAX_STEPS + 1`` float64 values is 8 MB, and a million network evaluations per sample
#: is already hours on a CPU; a larger request is a mistake, refused before anything is allocated.
#: What a model callable computes, for the samplers' entry checks (:func:`mark_kind`, :func:`check_kind`).
MODEL_KINDS = {
    "denoiser": "a denoiser D(x, sigma) -> x0_hat",
    "score": "a score s(x, sigma) = grad log p_sigma(x) in the noise level sigma",
    "sde-score": "a score s(x, t) of an SDE in its time t",
    "eps": "a noise predictor eps(x_t, t_label) of a discrete chain",
}
#: The converters that turn one model kind into another, as the error messages name them.
CONVERTERS = {
    ("score", "denoiser"): "companion.precond.denoiser_from_score(score_fn)",
    ("denoiser", "score"): "companion.precond.score_from_denoiser(denoiser)",
    ("scorenet", "denoiser"): "companion.precond.denoiser_fn(model) (or model.denoise)",
    ("scorenet", "sde-score"): "companion.precond.vp_score(model, sde)",
    ("scorenet", "eps"): "companion.precond.eps_model(model, schedule)",
}


def mark_kind(fn: Callable, kind: str) -> Callable:
    """Tag a model callable with what it computes (one of :data:`MODEL_KINDS`); returns ``fn``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {sorted(MODEL_KINDS)}, got {kind!r}")
    fn.model_kind = kind  # type: ignore[attr-defined]
    return fn


def check_kind(fn: Any, expected: str, name: str = "model") -> None:
    """Refuse a model of another kind than ``expected``, naming the converter.

    Plain callables carry no tag and pass (the sampler cannot know what they compute); the
    book's converters tag what they return, and a :class:`companion.diffusion.precond.ScoreNet` (whose call
    returns a score) is recognised by its class."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable ({MODEL_KINDS[expected]}), got {type(fn).__name__}")
    kind = getattr(fn, "model_kind", None)
    if type(fn).__name__ == "ScoreNet" and expected != "score":
        conv = CONVERTERS.get(("scorenet", expected), "")
        raise TypeError(f"{name} is a ScoreNet, whose call returns a score; this function needs "
                        f"{MODEL_KINDS[expected]}" + (f": pass {conv}" if conv else ""))
    if kind is not None and kind != expected:
        conv = CONVERTERS.get((kind, expected), "")
        raise TypeError(f"{name} is {MODEL_KINDS[kind]}, but this function needs {MODEL_KINDS[expected]}"
                        + (f": convert it with {conv}" if conv else ""))


MAX_STEPS = 10**6


def check_int(name: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer >= ``minimum`` (and <= ``maximum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value} (a size guard: this would allocate too much)")
    return int(value)


def make_generator(
    seed: int | torch.Generator | None, device: str | torch.device = "cpu", *, name: str = "generator"
) -> torch.Generator | None:
    """The one validation path for randomness: pass a ``torch.Generator`` through, seed a new one
    (on ``device``) from a non-negative int, or return ``None`` for ``None``: torch's functions then
    draw from the global generator, as torch does with ``generator=None``. Floats, bools and strings
    raise. For a ``seed`` that makes a result reproducible, :func:`seed_generator` refuses ``None``."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a torch.Generator or an int seed, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name}: a seed must be a non-negative int, got {seed}")
    dev = torch.device(device)
    g = torch.Generator(device="cpu" if dev.type == "meta" else dev)   # meta tensors draw no values
    g.manual_seed(int(seed))
    return g


def seed_generator(seed: int | torch.Generator, device: str | torch.device = "cpu", *,
                   name: str = "seed") -> torch.Generator:
    """As :func:`make_generator`, for a ``seed`` argument that makes a result reproducible: ``None``
    is refused (there is no silent default seed)."""
    g = make_generator(seed, device, name=name)
    if g is None:
        raise ValueError(f"{name} must be an int seed (or a torch.Generator), got None")
    return g


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (used for weight init in notebooks)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - notebooks may use the legacy global API
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count afterwards
    (also on an error). A model trained with 2 threads sums its floats in another order than with
    1, so to repeat a recorded training run to the last digit, use the thread count it recorded::

        with torch_threads(2):
            model = train(...)
    """
    n = check_int("n", n, minimum=1)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


class progress(tqdm):  # noqa: N801 - used like tqdm itself
    """``tqdm`` that stays live in Jupyter but prints one final line in a book build.

    When the environment sets ``COMPANION_PROGRESS=final`` (the book build does), the bar draws
    nothing while it runs and writes its final state (steps, time, rate, postfix) once when it
    closes, so a rendered page shows one line per bar instead of every refresh.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._final_only = os.environ.get("COMPANION_PROGRESS") == "final"
        if self._final_only:
            self._real_file = kwargs.get("file") or sys.stderr
            kwargs["file"] = io.StringIO()
            kwargs.setdefault("ascii", False)  # a StringIO would make tqdm fall back to '#' bars
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        final = self._final_only and not getattr(self, "disable", True)
        line = self.__str__() if final else ""
        super().close()
        if final:
            self._real_file.write(line + "\n")
            self._real_file.flush()
