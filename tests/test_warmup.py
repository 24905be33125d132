"""`convcli warmup` (#14): the compiled loops ahead of time, so later runs never wait on them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convcli.engine.warmup import COMPILED_FUNCTIONS

from conftest import images_past_the_numpy_budget, subprocess_env


def convcli(args, env):
    return subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_warmup_fills_the_cache_the_pipeline_uses(tmp_path, rng):
    env = subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "empty-cache"))
    first = convcli(["warmup"], env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    count = len(COMPILED_FUNCTIONS)
    assert [line.split()[0] for line in lines[:count]] == list(COMPILED_FUNCTIONS)
    assert all("compiled in" in line for line in lines[:count]), first.stdout
    assert str(tmp_path / "empty-cache") in lines[count]
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
    assert [line.split()[1] for line in again.stdout.splitlines()[:count]] == ["cached"] * count


# --- the cache: one per machine, and never a reason to fail ------------------------------------

REPO = Path(__file__).resolve().parent.parent
# Runs every compiled loop on random data and checks it against the NumPy paths; prints its
# compile seconds per function as JSON.
CHECK_SCRIPT = """
import json, numpy as np
from convcli.engine import _compile_log, _runtime, convolve
from convcli.engine.pooling import max_pool2d, avg_pool2d
_runtime.prefer_compiled()
rng = np.random.default_rng(1)
x = rng.standard_normal((1, 2, 33, 41)).astype(np.float32)
dense = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
rank_one = np.outer([1, 2, 1], [-1, 0, 1])[None, None].repeat(2, 0).astype(np.float32)
for weight, groups, engine in ((dense, 1, "direct"), (rank_one, 2, "separable")):
    compiled = convolve(x, weight, groups=groups, engine=engine)[0]
    numpy_result = convolve(x, weight, groups=groups, engine="numpy")[0]
    np.testing.assert_allclose(compiled, numpy_result, rtol=1e-5, atol=1e-5)
windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2]
np.testing.assert_array_equal(max_pool2d(x, 2), windows.max(axis=(4, 5)))
np.testing.assert_allclose(avg_pool2d(x, 2), windows.mean(axis=(4, 5)), rtol=1e-6, atol=1e-6)
print(json.dumps(_compile_log.seconds_by_function()))
"""


def run_python(script: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


def install_copy(destination: Path) -> Path:
    """A copy of the convcli package, as another virtualenv would hold it (new path, new
    modification times); returns the folder to put on PYTHONPATH."""
    shutil.copytree(REPO / "convcli", destination / "convcli", copy_function=shutil.copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "kernels", destination / "kernels", copy_function=shutil.copy)
    return destination


@pytest.fixture(scope="module")
def warmed_cache(tmp_path_factory) -> Path:
    """A cache root that ``convcli warmup`` has filled once (copy it before changing it)."""
    root = tmp_path_factory.mktemp("warmed") / "cache"
    result = convcli(["warmup", "--json"], subprocess_env(NUMBA_CACHE_DIR=str(root)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] > 0
    return root


def copy_of(warmed_cache: Path, tmp_path: Path) -> Path:
    shutil.copytree(warmed_cache, tmp_path / "cache")
    return tmp_path / "cache"


@pytest.mark.slow
def test_another_install_of_the_same_version_finds_the_cache(tmp_path, warmed_cache):
    """A reinstall or a second virtualenv (another path, new file times) starts warm: the
    cache is keyed by version, engine source and CPU, not by where the files are."""
    other = install_copy(tmp_path / "venv-b")
    env = {**subprocess_env(NUMBA_CACHE_DIR=str(copy_of(warmed_cache, tmp_path))),
           "PYTHONPATH": str(other)}
    result = convcli(["warmup", "--json"], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"] == 0, report                       # nothing compiled
    assert report["cache"].startswith(str(tmp_path / "cache"))
    assert json.loads(run_python(CHECK_SCRIPT, env).stdout) == {}


@pytest.mark.slow
def test_corrupt_cache_files_are_compiled_again_and_repaired(tmp_path, warmed_cache):
    cache = copy_of(warmed_cache, tmp_path)
    env = subprocess_env(NUMBA_CACHE_DIR=str(cache))
    index = next(cache.rglob("_pool_loops.pool_axis-*.nbi"))
    for data in cache.rglob("_pool_loops.pool_axis-*.nbc"):
        data.write_bytes(data.read_bytes()[:100])               # truncated machine code
    index.write_bytes(b"\x80\x04not a pickle")                   # and a garbled index
    first = run_python(CHECK_SCRIPT, env)
    assert set(json.loads(first.stdout)) == {"pool_axis"}       # only it compiled again
    assert "unreadable entry of the compiled-code cache" in first.stderr
    assert json.loads(run_python(CHECK_SCRIPT, env).stdout) == {}   # and the cache is whole


@pytest.mark.slow
def test_machine_code_for_another_cpu_is_never_loaded(tmp_path, warmed_cache):
    """An index entry made for another CPU (as on a shared network home) is passed over:
    the loop compiles for this CPU and gives the right numbers."""
    import pickle

    cache = copy_of(warmed_cache, tmp_path)
    index = next(cache.rglob("_pool_loops.pool_axis-*.nbi"))
    with open(index, "rb") as handle:
        version = pickle.load(handle)
        stamp, overloads = pickle.loads(handle.read())
    foreign = {(signature, (target[0], "another-cpu", target[2]), hashes): name
               for (signature, target, hashes), name in overloads.items()}
    with open(index, "wb") as handle:
        pickle.dump(version, handle)
        handle.write(pickle.dumps((stamp, foreign)))
    result = run_python(CHECK_SCRIPT, subprocess_env(NUMBA_CACHE_DIR=str(cache)))
    assert set(json.loads(result.stdout)) == {"pool_axis"}


def test_the_cache_folder_is_keyed_by_version_engine_source_and_cpu(monkeypatch):
    import convcli
    from convcli.engine import _cache

    def name() -> str:
        _cache.folder_name.cache_clear()
        return _cache.folder_name()

    try:
        here = name()
        assert here.startswith(f"convcli-{convcli.__version__}-")
        monkeypatch.setattr(convcli, "__version__", "9.9.9")
        other_version = name()
        monkeypatch.undo()
        monkeypatch.setattr(_cache, "_cpu_description", lambda: "another cpu")
        other_cpu = name()
        monkeypatch.undo()
        monkeypatch.setattr(_cache, "ENGINE_SOURCES", ("_loops.py",))   # another engine source
        other_source = name()
        assert len({here, other_version, other_cpu, other_source}) == 4
    finally:
        monkeypatch.undo()
        _cache.folder_name.cache_clear()


@pytest.mark.slow
def test_unwritable_cache_folders_fall_back_then_compile_without_a_cache(tmp_path):
    """NUMBA_CACHE_DIR unwritable: the cache moves to the temporary folder; that unwritable
    too: every run compiles (no crash, right numbers). A plain file in the way stands in for
    a read-only folder, since the tests may run as root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    writable_tmp = tmp_path / "tmp"
    writable_tmp.mkdir()
    env = subprocess_env(NUMBA_CACHE_DIR=str(blocker / "cache"), TMPDIR=str(writable_tmp))
    result = convcli(["warmup", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cache"].startswith(str(writable_tmp))
    # No writable temporary folder either (tempfile itself would find /tmp, so it is told).
    no_temporary = f"import tempfile; tempfile.gettempdir = lambda: {str(blocker / 'tmp')!r}\n"
    for _ in range(2):
        run = run_python(no_temporary + CHECK_SCRIPT, env, cwd=tmp_path)
        assert set(json.loads(run.stdout)) == {"direct_conv", "separable_conv", "pool_axis"}
    nowhere = run_python(no_temporary + "from convcli.cli import main\nmain(['warmup'])", env)
    assert "compiled in" in nowhere.stdout and "nowhere" in nowhere.stdout, nowhere.stdout


@pytest.mark.slow
def test_two_processes_compiling_at_once_both_succeed(tmp_path):
    """Two `convcli warmup` at once on an empty cache: one compiles, the other waits for its
    lock and then loads; then two cold runs at once start at most one background compile."""
    from convcli.engine._cache import wait_for_background

    env = subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "convcli", "warmup", "--json"]
    both = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    reports = []
    for process in both:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        reports.append(json.loads(out)["total"])
    assert min(reports) == 0 < max(reports)
    assert json.loads(run_python(CHECK_SCRIPT, env).stdout) == {}

    cold = subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "cold"))
    images = images_past_the_numpy_budget(tmp_path, 2, taps_per_pixel=9)
    runs = [subprocess.Popen([sys.executable, "-m", "convcli", "apply", *map(str, images), "-k",
                              "laplacian", "-o", str(tmp_path / f"o{n}"), "--format", "npy",
                              "-j", "1"], env=cold, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for n in range(2)]
    notes = 0
    for process in runs:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        notes += err.count("compiles in the background")
    assert notes == 1
    assert wait_for_background(tmp_path / "cold", timeout=600)
    for name in ("0_laplacian.npy", "1_laplacian.npy"):
        np.testing.assert_allclose(np.load(tmp_path / "o0" / name), np.load(tmp_path / "o1" / name),
                                   rtol=1e-5, atol=1e-4)
