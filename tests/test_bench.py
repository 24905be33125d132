"""`convcli bench` runs and reports ratios (the numbers themselves are never asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run_cli as run
from convcli.bench import CASES, Measurement, run_cases
from convcli.cli import main
from convcli.errors import UsageError


def test_a_case_reports_convcli_first_and_ratios_against_the_others():
    rows = run_cases(["stride"], repeat=1)
    assert rows[0].tool == "convcli" and rows[0].ratio is None and rows[0].ms > 0
    for row in rows[1:]:
        assert row.ratio == pytest.approx(rows[0].ms / row.ms)


def test_unknown_case_lists_the_cases():
    with pytest.raises(UsageError, match="dense3"):
        run_cases(["dense4"], repeat=1)
    assert {"dense3", "dense31", "separable", "channels", "end-to-end", "batch",
            "cold-start"} <= set(CASES)


def test_the_help_names_every_case_in_order():
    """`bench --help` lists choices.BENCH_CASES (importing bench.py would import NumPy)."""
    from convcli.choices import BENCH_CASES

    assert tuple(CASES) == BENCH_CASES


def test_cli_writes_json(tmp_path, capsys):
    target = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--case", "stride", "--repeat", "1", "--json", str(target)])
    assert exit_info.value.code == 0
    result = json.loads(target.read_text())
    assert "cores" in result["machine"] and result["results"][0]["tool"] == "convcli"
    assert "3x3 stride 2" in capsys.readouterr().out


def test_missing_reference_libraries_are_named_before_the_run(monkeypatch, capsys):
    """A library that does not import: one note per library, with how to install it, before
    the cases run (they leave its rows out)."""
    import convcli.bench

    monkeypatch.setitem(sys.modules, "cv2", None)        # import cv2 raises ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    ran = []
    monkeypatch.setattr(convcli.bench, "run_cases", lambda names, repeat: ran.append(names) or [
        Measurement("3x3 stride 2", "convcli", 1.0)])
    code, out, err = run(["bench", "--case", "stride", "--repeat", "1"], capsys)
    assert code == 0, err
    assert err.splitlines() == [
        "convcli: note: opencv-python-headless is not installed: the OpenCV rows are left out "
        "(pip install 'convcli[bench]')",
        "convcli: note: torch is not installed: the torch rows are left out (pip install "
        "torch==2.13.0, its CPU build)"]
    assert ran == [["stride"]] and "3x3 stride 2" in out


# --- the cold-start case's helpers (the case itself takes minutes: run it with `convcli bench`) --

def test_cold_runs_each_get_a_new_empty_cache_and_wait_for_its_background_compile(
        tmp_path, monkeypatch):
    """A stand-in command logs the cache it was given and whether it was empty, then fills it."""
    import convcli.bench as bench

    log, warm_cache = tmp_path / "log", tmp_path / "warm-cache"
    warm_cache.mkdir()
    command = [sys.executable, "-c",
               "import os, sys; cache = os.environ['NUMBA_CACHE_DIR']; "
               "open(sys.argv[1], 'a').write(f'{cache} {len(os.listdir(cache))}\\n'); "
               "open(os.path.join(cache, 'compiled'), 'w').close()", str(log)]
    awaited = []
    monkeypatch.setattr(bench, "_wait_for_background", awaited.append)
    cold, warm, runs = bench._cold_and_warm(command, 3, tmp_path, warm_cache)
    assert runs == 2 and cold > 0 and warm > 0
    seen = [line.rsplit(" ", 1) for line in log.read_text().splitlines()]
    warm_runs = [entries for cache, entries in seen if cache == str(warm_cache)]
    cold_runs = [(cache, entries) for cache, entries in seen if cache != str(warm_cache)]
    assert len(warm_runs) == 1 + 3                   # one untimed, then `repeat` timed
    assert len({cache for cache, _ in cold_runs}) == 2 and all(
        entries == "0" and Path(cache).parent == tmp_path for cache, entries in cold_runs)
    assert {str(cache) for cache in awaited} >= {cache for cache, _ in cold_runs}


@pytest.mark.slow
def test_warmup_seconds_read_the_real_warmup(tmp_path):
    """Every compiled loop's seconds are read from warmup --json, from an empty cache."""
    from conftest import subprocess_env
    from convcli.bench import _warmup_seconds
    from convcli.engine.warmup import COMPILED_FUNCTIONS

    seconds = _warmup_seconds(subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "empty-cache")))
    assert set(seconds) == set(COMPILED_FUNCTIONS) and all(s > 0 for s in seconds.values())
