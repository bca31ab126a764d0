"""Size guards: absurd sizes raise a clear ValueError before anything is allocated.

Each call below would otherwise ask for hundreds of GB (10**11 float64 values are 800 GB). The
tests run under a 4 GB address-space limit in a subprocess, so a guard that went missing fails
with a MemoryError/RuntimeError instead of exhausting the machine.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from companion import gmm, ode, samplers, schedules, sde, unified
from companion.core.utils import MAX_STEPS, check_int

ROOT = Path(__file__).resolve().parents[1]
HUGE = 10**11


def test_check_int_maximum():
    assert check_int("k", 5, minimum=1, maximum=5) == 5
    with pytest.raises(ValueError, match=r"k must be <= 5, got 6 \(a size guard"):
        check_int("k", 6, minimum=1, maximum=5)
    assert check_int("k", 10**12) == 10**12  # no maximum unless asked for


def test_gmm_sample_size_guard():
    lab = gmm.lab_2d()
    with pytest.raises(ValueError, match="size guard MAX_SAMPLE_ELEMENTS"):
        lab.sample(HUGE, 0)
    # the guard counts n (d^2 + 2d) elements: the largest n allowed in 2-D still passes the check
    n_max = gmm.MAX_SAMPLE_ELEMENTS // 8
    with pytest.raises(ValueError, match="too large"):
        lab.sample(n_max + 1, 0)
    # and in 64 dimensions the same budget refuses far fewer points
    wide = gmm.GaussianMixture([1.0], torch.zeros(1, 64, dtype=torch.float64), [1.0])
    with pytest.raises(ValueError, match="dimension 64"):
        wide.sample(gmm.MAX_SAMPLE_ELEMENTS // (64 * 64 + 128) + 1, 0)
    assert wide.sample(10, 0).shape == (10, 64)


@pytest.mark.parametrize("call", [
    lambda n: ode.sigma_grid(n),
    lambda n: sde.time_grid(sde.VPSDE(), n),
    lambda n: sde.reverse_sample(sde.VPSDE(), lambda x, t: -x, torch.zeros(2, 2), steps=n, generator=0),
    lambda n: sde.pc_sample(sde.VPSDE(), lambda x, t: -x, torch.zeros(2, 2), steps=n, generator=0),
    lambda n: samplers.karras_warp(n),
    lambda n: samplers.warped_grid([0.0, 0.0], n),
    lambda n: schedules.DiscreteSchedule.linear(n),
    lambda n: schedules.DiscreteSchedule.su(n),
    lambda n: schedules.DiscreteSchedule.cosine(n),
    lambda n: schedules.su_vp().discretize(n),
], ids=["sigma_grid", "time_grid", "reverse_sample", "pc_sample", "karras_warp", "warped_grid", "linear", "su",
        "cosine", "discretize"])
def test_step_counts_are_capped(call):
    with pytest.raises(ValueError, match=f"must be <= {MAX_STEPS}"):
        call(HUGE)
    with pytest.raises(ValueError, match="size guard"):
        call(MAX_STEPS + 1)


def test_step_cap_allows_the_cap_itself():
    assert ode.sigma_grid(MAX_STEPS).shape == (MAX_STEPS + 1,)
    assert sde.time_grid(sde.VPSDE(), MAX_STEPS).shape == (MAX_STEPS + 1,)


def test_fokker_planck_steps_capped():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    p0 = torch.exp(-0.5 * x**2)
    with pytest.raises(ValueError, match="steps must be <="):
        sde.VPSDE().fokker_planck(p0, x, torch.tensor([0.0, 0.5], dtype=torch.float64), steps=HUGE)


def test_enumerated_law_size_guard():
    with pytest.raises(ValueError, match="too many to enumerate"):
        unified.EnumeratedLaw.chain(vocab=12, length=9)


def test_guards_fire_before_allocating():
    """Under a 4 GB address-space limit every absurd request must end in the guard's ValueError."""
    code = textwrap.dedent("""
        import resource, torch
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
        from companion import gmm, ode, schedules, sde, unified
        N = 10**11
        for f in (lambda: gmm.lab_2d().sample(N, 0), lambda: ode.sigma_grid(N),
                  lambda: sde.time_grid(sde.VPSDE(), N), lambda: schedules.DiscreteSchedule.linear(N),
                  lambda: unified.EnumeratedLaw.chain(12, 9)):
            try:
                f()
            except ValueError:
                continue
            raise SystemExit("no ValueError")
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_ddim_ode_solve_caps_its_steps():
    from companion import ddpm
    from companion.core.utils import MAX_STEPS

    with pytest.raises(ValueError, match="steps"):
        ddpm.ddim_ode_solve(lambda x, s: torch.zeros_like(x), torch.zeros(2, 1), 1.0, 0.0, steps=MAX_STEPS + 1)
