"""Issue #13: hostile input. Each case failed before (a traceback, a raw library message on
stderr, or the wrong exit code); now every problem is one convcli line and the right code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli as run



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


# --- symbolic link loops in the inputs --------------------------------------------------------

def test_a_file_link_to_itself_in_a_folder_is_skipped_with_a_warning(tmp_path, photo, capsys):
    (photo.parent / "loop.png").symlink_to("loop.png")
    for extra in ([], ["-r"]):
        out = tmp_path / f"out{len(extra)}"
        code, _, err = run(["apply", photo.parent, *extra, "-k", "box", "-o", out, "-q",
                            "--report", "none"], capsys)
        assert code == 0 and "Traceback" not in err, err
        assert err.splitlines() == [f"convcli: warning: {photo.parent / 'loop.png'}: a symbolic "
                                    "link loop (it leads back to itself); skipped"]
        assert [p.name for p in out.iterdir()] == ["photo_box.png"]


def test_a_pattern_matching_a_link_loop_skips_it(tmp_path, photo, capsys):
    (photo.parent / "loop.png").symlink_to("loop.png")
    code, _, err = run(["apply", str(photo.parent / "*.png"), "-k", "box", "-o", tmp_path / "out",
                        "-q", "--report", "none"], capsys)
    assert code == 0 and len(err.splitlines()) == 1 and "symbolic link loop" in err, err


def test_a_named_link_loop_fails_on_one_line(tmp_path, photo, capsys):
    loop = photo.parent / "loop.png"
    loop.symlink_to("loop.png")
    before = _digest(photo)
    code, _, err = run(["apply", loop, photo, "-k", "box", "-o", tmp_path / "out", "-q",
                        "--report", "none"], capsys)
    assert_one_error(code, err, 1, str(loop), "symbolic link loop")
    assert (tmp_path / "out" / "photo_box.png").is_file() and _digest(photo) == before


@pytest.mark.parametrize("pattern", [False, True])
def test_a_folder_link_loop_never_recurses_for_ever(tmp_path, photo, capsys, pattern):
    for name in ("x", "y", "z"):        # three links to '.': glob.glob('**') went 3^40 deep
        (photo.parent / name).symlink_to(".")
    (photo.parent / "a").mkdir()
    (photo.parent / "a" / "b").symlink_to("..")
    source = str(photo.parent / "**" / "*.png") if pattern else photo.parent
    code, _, err = run(["apply", source, "-r", "-k", "box", "-o", tmp_path / "out", "-q",
                        "--report", "none"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert [p.name for p in (tmp_path / "out").rglob("*.png")] == ["photo_box.png"]
    if not pattern:
        assert len(err.splitlines()) == 4 and all("(a loop); not followed" in line
                                                 for line in err.splitlines()), err


# --- --engine: checked once, before any work ---------------------------------------------------

@pytest.mark.parametrize("spec", ["laplacian", "[[1,2],[3,4]]"])
def test_engine_separable_with_a_kernel_of_rank_above_one_is_a_usage_error(tmp_path, photo, capsys,
                                                                          spec):
    code, _, err = run(["apply", photo, "-k", "box", "-k", spec, "--engine", "separable",
                        "-o", tmp_path / "out"], capsys)
    assert_one_error(code, err, 2, "--engine separable", "--engine auto or direct")
    assert not (tmp_path / "out").exists()


def test_engine_separable_runs_rank_one_kernels(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "-k", "gaussian:sigma=1", "--engine",
                        "separable", "-o", tmp_path / "out", "-q", "--report", "none"], capsys)
    assert code == 0 and err == ""


def test_an_empty_engine_is_a_usage_error(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "box", "--engine", "", "-o", tmp_path / "out"], capsys)
    assert_one_error(code, err, 2, "--engine must be one of")
    assert not (tmp_path / "out").exists()


# --- tags of the wrong type: a rational where a SHORT belongs ---------------------------------

def _exif(entries) -> bytes:
    """Little-endian TIFF-style EXIF with one IFD of (tag, type, count, value bytes)."""
    import struct

    end = 8 + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, end + len(data))
            data += value
    return b"II*\0" + struct.pack("<IH", 8, len(entries)) + table + b"\0\0\0\0" + data


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_rational_resolution_unit_with_an_orientation_is_read_upright(tmp_path, rng, capsys,
                                                                        suffix):
    import struct

    path = tmp_path / f"turned{suffix}"
    exif = _exif([(274, 3, 1, struct.pack("<H", 6)),            # turned 90 degrees clockwise
                  (296, 5, 1, struct.pack("<II", 145, 2))])     # ResolutionUnit as a RATIONAL
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, exif=exif, **({"lossless": True} if suffix == ".webp" else {}))
    before = _digest(path)
    out = tmp_path / "out.npy"
    code, _, err = run(["apply", path, "-k", "identity", "-o", out], capsys)
    assert code == 0 and "Traceback" not in err and "internal error" not in err, err
    assert np.load(out).shape[-2:] == (30, 20)                  # upright: the turn was made
    assert _digest(path) == before


# --- what C libraries print on file descriptor 2 -----------------------------------------------

def _run_subprocess(tmp_path, *args):
    import subprocess
    import sys

    from conftest import subprocess_env

    return subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], capture_output=True,
                          text=True, env=subprocess_env(), cwd=tmp_path, timeout=300)


def test_libtiff_messages_about_a_truncated_packbits_tiff_stay_off_stderr(tmp_path, rng):
    import tifffile

    good = tmp_path / "good.tif"
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
        good, compression="packbits")
    with tifffile.TiffFile(good) as tif:
        start, count = tif.pages[0].dataoffsets[0], sum(tif.pages[0].databytecounts)
    data = bytearray(good.read_bytes())
    data[start + 20:start + count] = b"\x80" * (count - 20)      # PackBits no-ops: rows run out
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    before = _digest(bad)
    result = _run_subprocess(tmp_path, "apply", bad, good, "-k", "box", "-o", tmp_path / "out",
                             "-q", "--report", "none")
    assert_one_error(result.returncode, result.stderr, 1, str(bad), "cannot decode")
    assert "PackBitsDecode" in result.stderr                   # named in convcli's own line
    assert (tmp_path / "out" / "good_box.png").is_file() and _digest(bad) == before


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_corrupt_exif_warning_is_a_convcli_line_in_workers_too(tmp_path, rng, jobs):
    path = tmp_path / "bad_exif.png"
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
        path, exif=b"II*\x00\xff\xff\xff\x7f")
    other = tmp_path / "other.png"
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(other)
    result = _run_subprocess(tmp_path, "apply", path, other, "-j", jobs, "-k", "box", "-o",
                             tmp_path / "out", "-q", "--report", "none")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("convcli: warning: Corrupt EXIF data") for line in lines), \
        result.stderr
