"""Every bad input the API fuzzer generates must raise a clear ValueError/TypeError, and every
input that torch accepts must be accepted.

``tools/fuzz_api.py`` substitutes, one argument at a time, NaN/inf tensors, empty batches, integer,
bool and half-precision dtypes, wrong shapes, bad sizes and seeds, out-of-range times, callables
that return NaN or the wrong shape, and unknown options into a valid call of every public
function of the core, the diffusion chapters and the chapter modules eae, gau, positions, triples
and samplers (about 4400 cases). Silent NaN/inf, silent acceptance, obscure internal errors, hangs
and memory blow-ups all fail this test; so does refusing ``generator=None``, a model output in
float16/bfloat16, or an empty batch where the result is per sample (which must come back empty).
"""

import importlib.util
import sys
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("fuzz_api", Path(__file__).resolve().parents[1] / "tools" / "fuzz_api.py")
fuzz_api = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_api"] = fuzz_api  # dataclasses look their module up
_spec.loader.exec_module(fuzz_api)


#: Cases of companion/gau.py, which another branch is editing: its ``make_generator(seed)`` needs
#: ``optional=False`` and ``reversal_batch`` must take ``generator=None``. Remove once fixed (the
#: test says so when they pass).
PENDING: set[tuple[str, str, str]] = set()


def test_every_bad_input_raises_a_clear_error():
    threads = torch.get_num_threads()
    try:
        rep = fuzz_api.run(timeout=20)
    finally:
        torch.set_num_threads(threads)
    assert not rep["baseline_errors"], rep["baseline_errors"]
    assert rep["cases"] > 3500
    chapters = ("eae.", "EAE.", "VAE.", "gau.", "positions.", "triples.", "samplers.")
    assert sum(r["target"].startswith(chapters) for r in rep["results"]) > 1500
    ok = [r for r in rep["results"] if r["bad"].startswith("ok:")]
    assert len(ok) > 180 and {r["bad"] for r in ok} >= {"ok: None", "ok: empty batch", "ok: returns float16",
                                                         "ok: returns bfloat16"}
    bad = [r for r in rep["results"] if r["outcome"] not in ("clear", "ok")
           and (r["target"], r["arg"], r["bad"]) not in PENDING]
    pending = {(r["target"], r["arg"], r["bad"]) for r in rep["results"] if r["outcome"] not in ("clear", "ok")}
    assert pending >= PENDING, f"fixed: remove {PENDING - pending} from PENDING"
    assert not bad, "\n".join(f"{r['outcome']}: {r['target']}({r['arg']} = {r['bad']}) {r['message']}" for r in bad)
