"""The shell face of convcli: completion, version, metavars and the examples in --help."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import run_cli as run
from convcli import __version__

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


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
    """The script calls convcli with _CONVCLI_COMPLETE set: main() answers with the words,
    commands, options, and the values of options that take one of a few words."""
    monkeypatch.setenv("_CONVCLI_COMPLETE", "complete_bash")
    for words, expected in (("convcli kernels sh", ["show"]),
                            ("convcli apply --pad", ["--padding", "--pad-mode"]),
                            ("convcli apply --pad-mode re", ["reflect", "replicate"]),
                            ("convcli bench --case dense1", ["dense15"]),
                            ("convcli apply x.png -k sobel", ["sobel-x", "sobel-y", "sobel"]),
                            ("convcli kernels show scharr-", ["scharr-x", "scharr-y"])):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
        code, out, err = run([], capsys)
        assert code == 0, err
        assert out.split() == expected, out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_has_a_short_form(flag, capsys):
    code, out, _ = run([flag], capsys)
    assert code == 0 and out == f"convcli {__version__}\n"


COMMANDS = (["apply"], ["explain"], ["bench"], ["kernels", "list"], ["kernels", "show"])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_option_says_what_goes_there(command, capsys):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0, out
    assert not re.search(r"<(str|int|float|path)>", out), out


def test_choice_metavars_come_from_the_lists_the_checks_use(capsys):
    from convcli import engine, images, layers, pipeline
    from convcli.engine.api import ENGINE_CHOICES

    code, out, _ = run(["apply", "--help"], capsys)
    assert code == 0
    for option, words in (("--pad-mode", pipeline.PAD_MODES), ("--normalize", pipeline.NORMALIZE_CHOICES),
                          ("--format", images.OUTPUT_FORMATS), ("--engine", ENGINE_CHOICES),
                          ("--report", ("table", "json", "none")), ("--bit-depth", ("8", "16"))):
        assert re.search(re.escape(f"{option} {'|'.join(words)}") + r"\s", out), option
    for shown in ("-k, --kernel SPEC ", "--layer SPEC|FILE ", "-o, --output DIR|FILE|FMT:- ",
                  "--stride N|H,W ", "--padding same|valid|full|N|H,W\n", "-j, --jobs N ",
                  "--name TEMPLATE ", "--quality 1-100 ", "--max-pixels N ", "--scale S ",
                  "--bias B ", "--report-file FILE "):
        assert shown in out, shown
    assert tuple(engine.PADDING_MODES) == pipeline.PAD_MODES
    code, out, _ = run(["explain", "--help"], capsys)
    assert f"--pool {'|'.join(layers.POOL_MODES)} " in out and "-k, --kernel K|H,W|SPEC " in out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_two_examples_that_run_as_written(command, tmp_path, monkeypatch, capsys):
    """Run from a folder holding samples/, as from the repository's root; bench's timings
    (minutes) are left out, its options and case names are not."""
    import convcli.bench

    code, out, _ = run([*command, "--help"], capsys)
    examples = [shlex.split(line) for line in out.splitlines() if line.startswith("    convcli ")]
    assert len(examples) == 2, out
    assert all(example[1:1 + len(command)] == command for example in examples), examples
    (tmp_path / "samples").symlink_to(SAMPLES)
    monkeypatch.chdir(tmp_path)

    def run_cases(names, repeat):
        assert set(names) <= set(convcli.bench.CASES)
        return [convcli.bench.Measurement(name, "convcli", 1.0) for name in names]

    monkeypatch.setattr(convcli.bench, "run_cases", run_cases)
    for example in examples:
        code, out, err = run(example[1:], capsys)
        assert code == 0, f"{shlex.join(example)}: {err}"
