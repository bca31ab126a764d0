"""The committed result files of the full runs: they exist, parse, and are not stale."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from companion import experiments as E
from companion import store

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "results").glob("*/*.json"))
LOADS = re.compile(r"load_result\(\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]")


def _notebook_loads() -> set[tuple[str, str]]:
    found = set()
    for path in ROOT.glob("notebooks/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                found |= set(LOADS.findall("".join(cell["source"])))
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_result_file_parses_and_matches_its_code(path):
    record = json.loads(path.read_text())
    for key in ("chapter", "name", "command", "config", "results", "provenance"):
        assert key in record, f"{path.name} lacks {key!r}"
    assert (record["chapter"], record["name"]) == (path.parent.name, path.stem)
    exp = E.registry(record["chapter"]).get((record["chapter"], record["name"]))
    assert exp is not None, f"{path} has no registered experiment: remove it or register its code"
    assert record["config"] == exp.config, f"{path} is stale: rerun `{exp.command}`"
    prov = record["provenance"]
    for key in ("git_commit", "seconds", "cpu", "torch_threads", "versions", "date"):
        assert key in prov, f"{path.name}: provenance lacks {key!r}"
    assert E.provenance_line(record).startswith("*Computed by")


def test_every_result_the_book_reads_exists():
    for chapter, name in sorted(_notebook_loads()):
        path = E.result_path(chapter, name)
        assert path.exists(), f"a notebook loads {chapter}/{name} but {path} is missing"


def test_every_registered_experiment_has_a_result_file():
    missing = [exp.command for key, exp in E.registry().items() if not E.result_path(*key).exists()]
    assert not missing, "registered experiments without a committed result file:\n" + "\n".join(missing)


def test_load_result_refuses_stale_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="companion.experiments"):
        E.load_result("ch7", "does_not_exist")
    reg = E.registry()
    if not reg:
        pytest.skip("no experiment registered")
    (chapter, name), exp = next(iter(sorted(reg.items())))
    path = tmp_path / chapter / f"{name}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {**exp.config, "__changed__": 1}}))
    with pytest.raises(ValueError, match="stale"):
        E.load_result(chapter, name)


def test_cli_lists_and_rejects_unknown(capsys):
    from companion.experiments.__main__ import main

    assert main(["--list"]) == 0
    with pytest.raises(SystemExit):
        main(["ch99"])


def test_the_cheapest_experiment_reproduces_its_committed_file(tmp_path):
    """A result file must come from the code it records: re-run the cheapest registered experiment
    (by its recorded run time; those that need a peer library's scratch environment excluded) and
    compare every number with the committed file, wall-clock times excepted. The runs are deterministic at
    a fixed thread count."""
    timed = []
    for path in FILES:
        record = json.loads(path.read_text())
        if record["name"] != "sampler_benchmark":
            timed.append((record["provenance"]["seconds"], record["chapter"], record["name"], record))
    seconds, chapter, name, committed = min(timed)
    assert seconds < 120, f"the cheapest experiment takes {seconds} s; add a cheaper one"
    rec = E.run_experiment(chapter, name, out_dir=tmp_path, allow_dirty=True)
    assert rec["config"] == committed["config"]
    assert _without_timings(rec["results"]) == _without_timings(committed["results"]), (
        f"{chapter}/{name} does not reproduce its committed file")


def _without_timings(obj):
    """A result with its wall-clock times (keys ending in ``seconds``) removed: they are measured, not computed."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def test_run_experiment_refuses_a_dirty_tree(monkeypatch):
    monkeypatch.setattr(store, "dirty_code_files", lambda: ["companion/core/metrics.py"])
    (chapter, name), _ = next(iter(sorted(E.registry().items())))
    with pytest.raises(RuntimeError, match="uncommitted edits"):
        E.run_experiment(chapter, name)


def test_same_platform_compares_torch_and_cpu():
    import torch

    record = {"provenance": {"versions": {"torch": torch.__version__}, "cpu": store._cpu_name()}}
    assert E.same_platform(record)
    assert not E.same_platform({"provenance": {"versions": {"torch": "0.0"}, "cpu": store._cpu_name()}})
    assert not E.same_platform({"provenance": {"versions": {"torch": torch.__version__}, "cpu": "another CPU"}})
