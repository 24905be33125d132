"""`convcli bench` runs and reports ratios (the numbers themselves are never asserted)."""

from __future__ import annotations

import json

import pytest

from convcli.bench import CASES, run_cases
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
