"""Tests of the chapter 7 run helpers: steps to a loss threshold, one run's record, seed summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion import gau
from companion.experiments import ch7_gau as runs


def _brute_steps(losses, threshold, window):
    for t in range(window, len(losses) + 1):
        if sum(losses[t - window:t]) / window < threshold:
            return t
    return None


def test_steps_to_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        losses = list(np.exp(-np.linspace(0, rng.uniform(0, 6), n)) * 3 + rng.normal(0, 0.3, n) ** 2)
        window = int(rng.integers(1, 12))
        thr = float(rng.uniform(0.05, 3))
        assert gau.steps_to_threshold(losses, thr, window) == _brute_steps(losses, thr, window)


def test_steps_to_threshold_edges_and_validation():
    assert gau.steps_to_threshold([1.0, 1.0, 0.0, 0.0], 0.6, window=2) == 3       # (1 + 0) / 2 = 0.5
    assert gau.steps_to_threshold([1.0, 1.0, 0.0, 0.0], 0.5, window=2) == 4       # strictly below
    assert gau.steps_to_threshold([0.0], 0.1, window=2) is None                   # shorter than the window
    assert gau.steps_to_threshold([2.7] * 100, 0.1) is None
    with pytest.raises(ValueError, match="NaN"):
        gau.steps_to_threshold([1.0, float("nan")], 0.5, window=1)
    with pytest.raises(ValueError, match="1-D"):
        gau.steps_to_threshold([[1.0]], 0.5)
    with pytest.raises(ValueError, match="threshold"):
        gau.steps_to_threshold([1.0], 0.0)
    with pytest.raises(ValueError, match="window"):
        gau.steps_to_threshold([1.0], 0.5, window=0)


def _tiny_job(**kw):
    job = dict(kind="std", layers=1, length=6, lr=3e-3, steps=30, warmup=0, deepnorm=False, seed=0,
               thresholds=[2.0, 0.1], window=5, block=10)
    job.update(kw)
    return job


def test_run_job_records_the_run_it_makes():
    job = _tiny_job(probe_batch=8, probe_seed=1)
    row = runs.run_job(job)
    ref = gau.reversal_arm("std", 1, length=6, lr=3e-3, steps=30, seed=0, progress=False)
    assert set(row) == {"r_bar", "first_step", "final_loss", "accuracy", "steps_to", "curve"}
    assert len(row["curve"]) == 3
    for k in range(3):    # block means of the same deterministic run
        assert abs(row["curve"][k] - np.mean(ref["losses"][10 * k:10 * k + 10])) < 1e-4
    assert abs(row["final_loss"] - ref["final_loss"]) < 1e-5 and abs(row["accuracy"] - ref["accuracy"]) < 1e-6
    assert row["steps_to"] == {str(t): gau.steps_to_threshold(ref["losses"], t, 5) for t in (2.0, 0.1)}
    model = gau.SequenceModel(length=6, layers=1, kind="std", seed=0)
    tokens = gau.reversal_batch(8, torch.Generator().manual_seed(1), length=6)
    assert abs(row["r_bar"] - gau.residual_ratios(model, tokens).mean().item()) < 1e-6
    assert "r_bar" not in runs.run_job(_tiny_job(steps=10))


def test_run_jobs_keeps_the_order_of_the_jobs():
    jobs = [_tiny_job(steps=10, layers=1), _tiny_job(steps=10, layers=2, kind="gau"), _tiny_job(steps=20, seed=1)]
    assert runs.run_jobs(jobs, {"workers": 1, "threads": 1}) == [runs.run_job(j) for j in jobs]


def test_seed_summary():
    rows = {str(s): {"final_loss": fl, "accuracy": acc, "steps_to": {"0.1": st, "1.0": 5}}
            for s, (fl, acc, st) in enumerate([(0.1, 0.9, 100), (0.3, 1.0, 200), (0.2, 0.95, 300)])}
    out = runs.seed_summary(rows, 0.1)
    assert out["n"] == 3 and out["reached"] == 3
    assert math.isclose(out["final_loss"], 0.2) and math.isclose(out["final_loss_sd"], 0.1)
    assert math.isclose(out["steps"], 200) and math.isclose(out["steps_sd"], 100)
    assert math.isclose(out["steps_se"], 100 / math.sqrt(3))
    rows["1"]["steps_to"]["0.1"] = None
    out = runs.seed_summary(rows, "0.1")
    assert out["reached"] == 2 and out["steps"] is None and out["steps_sd"] is None
    assert runs.seed_summary(rows, 1.0)["steps"] == 5
    with pytest.raises(ValueError, match="empty"):
        runs.seed_summary({}, 0.1)


def test_registered_configurations():
    labels = {a[0] for a in runs.ARMS}
    assert set(runs.LR_SWEEP["arms"]) <= labels
    assert runs.COMPARISON["lr"] not in runs.LR_SWEEP["lrs"]         # the 2e-3 column is the comparison
    for cfg in (runs.COMPARISON, runs.LR_SWEEP, runs.DEPTH_SWEEP):
        assert len(cfg["seeds"]) >= 3 and cfg["threads"] == 1
    for key in ("length", "lr", "steps", "warmup"):
        assert runs.SMALL[key] == runs.COMPARISON[key] or key == "steps"
    assert runs.SMALL["steps"] < runs.COMPARISON["steps"]
