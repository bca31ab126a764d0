"""The wheel: it holds every layer and the committed weights, and an installed package, away from
the repository, loads the trained digits denoiser from its package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")  # a copy: setuptools writes build/ and egg-info beside the sources
    for d in ("companion", "results"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True, cwd=src,
                       env={**os.environ, "PIP_NO_INPUT": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_holds_every_layer_and_the_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for layer in ("core", "store", "diffusion", "sequence", "recipes", "experiments", "book"):
        assert f"companion/{layer}/__init__.py" in names
    for seed in (0, 1, 2):
        assert f"companion/_results/ch5/digits_denoiser_seed{seed}.pt" in names
    assert "companion/_results/ch5/digits_denoiser.json" in names


def test_an_installed_wheel_loads_the_digits_denoiser(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import companion, torch\n"
            "from companion.denoiser import load_digits_denoiser\n"
            "from companion.store import results_dir\n"
            "m = load_digits_denoiser(1)\n"
            "print(results_dir())\n"
            "print(companion.__file__)\n"
            "x = m.denoise(torch.zeros(2, 1, 8, 8), 1.0)\n"
            "print('x'.join(map(str, x.shape)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COMPANION_RESULTS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    where, package, shape = r.stdout.split()
    assert Path(package).is_relative_to(target) and Path(where).is_relative_to(target)
    assert shape == "2x1x8x8"
