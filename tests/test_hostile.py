"""Issue #13: hostile input. Each case failed before (a traceback, a raw library message on
stderr, or the wrong exit code); now every problem is one convcli line and the right code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli as run


@pytest.fixture
def photo(tmp_path, rng) -> Path:
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_error(code: int, err: str, expected_code: int, *phrases: str) -> None:
    """Exit ``expected_code``, exactly one stderr line, convcli's own, naming ``phrases``."""
    lines = err.splitlines()
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), err
    for phrase in phrases:
        assert phrase in lines[0], err


# --- numbers: ASCII digits only (str.isdigit() accepts '³', int() then raised) ----------------

@pytest.mark.parametrize("args, phrase", [
    (["--stride", "³"], "--stride"),
    (["--dilation", "³"], "--dilation"),
    (["--padding", "³"], "--padding"),
    (["--stride", "٣"], "--stride"),              # Arabic-Indic three: int() took it silently
    (["--padding", "1,٣"], "--padding"),
])
def test_non_ascii_digits_in_options_are_usage_errors(tmp_path, photo, capsys, args, phrase):
    before = _digest(photo)
    code, _, err = run(["apply", photo, "-k", "box", "-o", tmp_path / "out", *args], capsys)
    assert_one_error(code, err, 2, phrase, args[-1])
    assert _digest(photo) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, phrase", [
    ("box:dilation=³", "dilation"),
    ("box:size=٣", "size"),
    ("box:size=³", "size"),
    ("box:size=1_0", "size"),                     # int() reads '1_0' as 10
    ("gaussian:sigma=٣", "sigma"),
    ("motion:angle=٣", "angle"),
    ("3x3: 1,1,1 1,1,1 1,1,٣", "not a number"),
])
def test_non_ascii_digits_in_kernel_specs_are_usage_errors(tmp_path, photo, capsys, spec, phrase):
    code, _, err = run(["apply", photo, "-k", spec, "-o", tmp_path / "out"], capsys)
    assert_one_error(code, err, 2, phrase)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, phrase", [
    (["--size", "32", "-k", "3", "--stride", "³"], "--stride"),
    (["--size", "32", "-k", "3", "--padding", "³"], "--padding"),
    (["--size", "32", "-k", "3", "--dilation", "³"], "--dilation"),
    (["--size", "³", "-k", "3"], "--size"),
    (["--size", "32", "-k", "٣"], "unknown kernel"),
    (["--size", "32", "--layer", "conv:k=³"], "conv:k=³"),
    (["--size", "32", "--layer", "conv:k=٣"], "conv:k=٣"),
    (["--size", "32", "--layer", "conv:k=3,s=³"], "stride"),
    (["--size", "32", "--layer", "bias:value=٣"], "bias"),
])
def test_non_ascii_digits_in_explain_are_usage_errors(capsys, args, phrase):
    code, _, err = run(["explain", *args], capsys)
    assert_one_error(code, err, 2, phrase)


# --- explain --layer with a key and no value --------------------------------------------------

@pytest.mark.parametrize("spec, phrase", [
    ("conv:k=", "k has no value"),
    ("conv:k=,s=2", "k has no value"),
    ("conv:k=3,s=", "s has no value"),
    ("conv:k=x", "'x' is no kernel size"),
])
def test_layer_keys_without_a_value_are_usage_errors(capsys, spec, phrase):
    code, _, err = run(["explain", "--size", "32", "--layer", spec], capsys)
    assert_one_error(code, err, 2, f"--layer {spec!r}", phrase)
