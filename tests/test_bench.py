"""`convcli bench` runs and reports ratios (the numbers themselves are never asserted)."""

from __future__ import annotations

import json
import sys

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
    assert {"dense3", "dense31", "separable", "channels", "end-to-end", "batch"} <= set(CASES)


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
