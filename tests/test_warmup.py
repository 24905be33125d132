"""`convcli warmup` (#14): the compiled loops ahead of time, so later runs never wait on them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env


def convcli(args, env):
    return subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_warmup_fills_the_cache_the_pipeline_uses(tmp_path, rng):
    env = subprocess_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "empty-cache"))
    first = convcli(["warmup"], env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["direct_conv", "separable_conv", "pool_axis"]
    assert all("compiled in" in line for line in lines[:3]), first.stdout
    assert str(tmp_path / "empty-cache") in lines[3]
    for index, shape in enumerate([(30, 40, 3), (25, 20)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / f"{index}.png")
    run = convcli(["apply", tmp_path / "0.png", tmp_path / "1.png", "-k", "sobel", "-k",
                   "laplacian", "-k", "box:size=5,dilation=2", "--stride", "2", "-o",
                   tmp_path / "out"], env)
    assert run.returncode == 0, run.stderr
    assert "compiling" not in run.stderr                  # every loop came from the cache
    stack = convcli(["apply", tmp_path / "0.png", tmp_path / "1.png", "--layer",
                     "conv:k=3,c=4,init=random", "--layer", "pool:k=2,mode=avg", "-o",
                     tmp_path / "stack"], env)
    assert stack.returncode == 0 and "compiling" not in stack.stderr, stack.stderr
    again = convcli(["warmup"], env)
    assert [line.split()[1] for line in again.stdout.splitlines()[:3]] == ["cached"] * 3
