"""Every bad input the API fuzzer generates must raise a clear ValueError/TypeError.

``tools/fuzz_api.py`` substitutes, one argument at a time, NaN/inf tensors, empty batches, integer,
bool and half-precision dtypes, wrong shapes, bad sizes and seeds, out-of-range times, callables
that return NaN or the wrong shape, and unknown options into a valid call of every public
function of the core, the diffusion chapters and the chapter modules eae, gau, positions, triples
and samplers (about 3700 cases). Silent NaN/inf, silent
acceptance, obscure internal errors, hangs and memory blow-ups all fail this test.
"""

import importlib.util
import sys
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("fuzz_api", Path(__file__).resolve().parents[1] / "tools" / "fuzz_api.py")
fuzz_api = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_api"] = fuzz_api  # dataclasses look their module up
_spec.loader.exec_module(fuzz_api)


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
    bad = [r for r in rep["results"] if r["outcome"] != "clear"]
    assert not bad, "\n".join(f"{r['outcome']}: {r['target']}({r['arg']} = {r['bad']}) {r['message']}" for r in bad)
