"""The shell face of convcli: completion, version, metavars and the examples in --help."""

from __future__ import annotations

import pytest

from conftest import run_cli as run
from convcli import __version__


@pytest.fixture
def bash(monkeypatch):
    """Typer finds the shell from the process tree; say it is bash, whatever runs the tests."""
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))


def test_help_offers_completion_and_show_completion_prints_a_bash_script(bash, capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "--install-completion" in out and "--show-completion" in out, out
    code, out, err = run(["--show-completion"], capsys)
    assert code == 0, err
    assert "_CONVCLI_COMPLETE=complete_bash" in out
    assert "complete -o default -F _convcli_completion convcli" in out


def test_completion_runs_through_main(monkeypatch, capsys):
    """The script calls convcli with _CONVCLI_COMPLETE set: main() answers with the words."""
    monkeypatch.setenv("_CONVCLI_COMPLETE", "complete_bash")
    for words, expected in (("convcli kernels sh", ["show"]),
                            ("convcli apply --pad", ["--padding", "--pad-mode"])):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
        code, out, err = run([], capsys)
        assert code == 0, err
        assert out.split() == expected, out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_has_a_short_form(flag, capsys):
    code, out, _ = run([flag], capsys)
    assert code == 0 and out == f"convcli {__version__}\n"
