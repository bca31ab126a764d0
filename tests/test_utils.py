import io

import numpy as np
import pytest
import torch

from companion import utils
from companion.book import source


def test_append_dims():
    assert utils.append_dims(torch.ones(3), 4).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError, match="more than the target"):
        utils.append_dims(torch.ones(3, 2), 1)


def test_checks():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        utils.check_tensor("x", np.zeros(3))
    with pytest.raises(ValueError, match="x must have 2 dims"):
        utils.check_tensor("x", torch.zeros(3), ndim=2)
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        utils.check_positive("lam", 0.0)
    with pytest.raises(TypeError, match="k must be an int"):
        utils.check_int("k", 1.0)
    assert utils.check_positive("s", torch.tensor(2.0)) == 2.0


def test_make_generator_and_show_source():
    g = utils.make_generator(3)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=utils.make_generator(3)))
    md = source.show_source(utils.append_dims)
    assert "def append_dims" in getattr(md, "data", md)


def test_check_batch_and_require_generator():
    assert utils.check_batch("x", torch.zeros(3, 2), min_ndim=2).shape == (3, 2)
    with pytest.raises(ValueError, match="x must have a non-empty batch dimension and at least 2 dims"):
        utils.check_batch("x", torch.zeros(3), min_ndim=2)
    with pytest.raises(ValueError, match="non-empty batch"):
        utils.check_batch("x", torch.zeros(0, 2))
    assert utils.check_batch("x", torch.zeros(0, 2), allow_empty=True).shape == (0, 2)
    assert utils.require_generator(None) is None  # torch's global generator, as in torch
    with pytest.raises(ValueError, match="seed must be an int seed"):
        utils.seed_generator(None)
    with pytest.raises(TypeError, match="noise_gen must be a torch.Generator"):
        utils.require_generator(1.5, "noise_gen")
    assert isinstance(utils.require_generator(3), torch.Generator)


def _demo(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    """A docstring that the display hides."""
    x = utils.check_tensor("x", x)
    k = utils.check_int("k", k, minimum=1)
    if x.ndim != 1:
        raise ValueError("x must be 1-d")
    y = x * k  # the algorithm
    return y + 1


def test_algorithm_source_hides_docstring_and_checks_only():
    src, hidden = source.algorithm_source(_demo)
    assert "docstring" not in src and "check_" not in src and "raise" not in src
    assert "y = x * k  # the algorithm" in src and "return y + 1" in src
    assert hidden == 5  # docstring, two checks, the two-line if/raise
    compile(src, "<demo>", "exec")  # what is shown is still valid Python
    # every stripped display in the package compiles too, and is never empty
    from companion import ddpm, sde, triples
    for obj in (ddpm.posterior, ddpm.ddim_step, sde.fokker_planck_1d, triples.ConditionalLayerNorm):
        s, h = source.algorithm_source(obj)
        compile(s, obj.__qualname__, "exec")
        assert h > 0 and len(s.splitlines()) > 2


def test_show_source_is_collapsed_with_api_link():
    md = getattr(source.show_source(_demo), "data", "")
    assert md.startswith("<details") and "</details>" in md and "../book/api/" in md
    full = getattr(source.show_source(_demo, full=True), "data", "")
    assert "docstring that the display hides" in full


def test_progress_prints_one_final_line_in_a_build(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv("COMPANION_PROGRESS", "final")
    bar = utils.progress(range(40), desc="demo", file=out)
    for _ in bar:
        bar.set_postfix(loss=0.25)
    text = out.getvalue()
    assert text.count("\n") == 1 and "\r" not in text, text
    assert "demo: 100%" in text and "40/40" in text and "loss=0.25" in text
    monkeypatch.delenv("COMPANION_PROGRESS")
    live = io.StringIO()
    for _ in utils.progress(range(3), desc="live", file=live, mininterval=0):
        pass
    assert "\r" in live.getvalue()  # interactive: the bar redraws in place


def test_check_batch_accepts_a_1d_batch_by_default():
    from companion.core.utils import check_batch

    assert check_batch("x", torch.zeros(3)).shape == (3,)
    with pytest.raises(ValueError, match="non-empty batch"):
        check_batch("x", torch.zeros(0))
    with pytest.raises(ValueError, match="at least 2 dims"):
        check_batch("x", torch.zeros(3), min_ndim=2)


def _no_doc(x):
    y = x + 1
    return y


def test_algorithm_source_keeps_the_first_statement_of_a_function_without_docstring():
    src, hidden = source.algorithm_source(_no_doc)
    assert "y = x + 1" in src and hidden == 0


def test_append_dims_with_nothing_to_append():
    x = torch.arange(3.0)
    assert utils.append_dims(x, 1) is not None and utils.append_dims(x, 1).shape == (3,)
    assert utils.append_dims(x, 3).shape == (3, 1, 1)
    with pytest.raises(ValueError, match="more than the target"):
        utils.append_dims(torch.zeros(2, 2), 1)


def _public_callables():
    import inspect as _inspect

    import companion

    for modname in companion.__all__:
        mod = getattr(companion, modname)
        if not _inspect.ismodule(mod):
            continue
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if _inspect.isfunction(obj):
                yield obj
            elif _inspect.isclass(obj) and obj.__module__ == mod.__name__:
                yield from (m for m in vars(obj).values() if _inspect.isfunction(m))


def test_hidden_lines_never_define_names_the_algorithm_uses():
    # every statement show_source hides may only re-bind a parameter, so the shown code never
    # uses a name that only a hidden line defines
    import ast as _ast
    import inspect as _inspect
    import textwrap as _textwrap

    checked = 0
    for fn in _public_callables():
        try:
            src = _textwrap.dedent(_inspect.getsource(fn))
        except (OSError, TypeError):
            continue
        tree = _ast.parse(src)
        node = tree.body[0]
        if not isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef)):
            continue
        params = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
        for lo, hi in source._hidden_lines(node):
            for stmt in node.body:
                if lo <= stmt.lineno <= hi:
                    local = {t.id for c in _ast.walk(stmt) if isinstance(c, _ast.comprehension)
                             for t in _ast.walk(c.target) if isinstance(t, _ast.Name)}  # comprehension variables
                    bound = {t.id for t in _ast.walk(stmt) if isinstance(t, _ast.Name) and isinstance(t.ctx, _ast.Store)}
                    bound -= local
                    assert bound <= params, f"{fn.__qualname__}: a hidden line binds {bound - params}"
        checked += 1
    assert checked > 100


def test_torch_threads_sets_and_restores():
    old = torch.get_num_threads()
    target = 1 if old != 1 else 2
    with utils.torch_threads(target) as n:
        assert n == target and torch.get_num_threads() == target
    assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError, match="boom"), utils.torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == old
    with pytest.raises(ValueError, match="n must be >= 1"):
        with utils.torch_threads(0):
            pass
