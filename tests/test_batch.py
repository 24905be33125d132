"""Batch runs through the real `convcli` entry point: folders, failures, resumption, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def convcli(args, cwd: Path, *, stdin: bytes | None = None, timeout: float = 300):
    """Run ``python -m convcli ARGS``; return the CompletedProcess (bytes stdout, text stderr)."""
    env = subprocess_env()
    result = subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], cwd=cwd, env=env,
                            input=stdin, capture_output=True, timeout=timeout)
    result.stderr = result.stderr.decode()
    return result


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("convcli: error: ")]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp-*")]


def write_image(path: Path, rng, shape=(24, 30, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def tree(tmp_path, rng) -> Path:
    """photos/{a.png, b.jpg, notes.txt, broken.png, trip/{c.png, deep/d.png}, .hidden/e.png}"""
    root = tmp_path / "photos"
    write_image(root / "a.png", rng)
    write_image(root / "b.jpg", rng)
    write_image(root / "trip" / "c.png", rng, (20, 20))
    write_image(root / "trip" / "deep" / "d.png", rng, (17, 19, 4))
    write_image(root / ".hidden" / "e.png", rng)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return root


def test_recursive_folder_mirrors_the_tree_and_accounts_for_every_file(tree, tmp_path):
    result = convcli(["apply", tree, "-r", "-k", "sobel", "-o", tmp_path / "out", "--report", "json"],
                     tmp_path)
    assert result.returncode == 1, result.stderr
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "a_sobel.png", "b_sobel.png", "trip/c_sobel.png", "trip/deep/d_sobel.png"]
    assert Image.open(out / "trip" / "deep" / "d_sobel.png").mode == "RGBA"
    by_input = {Path(r["input"]).name: r for r in records(result)}
    assert {name: r["status"] for name, r in by_input.items()} == {
        "a.png": "done", "b.jpg": "done", "broken.png": "failed", "c.png": "done", "d.png": "done"}
    assert "broken.png" in by_input["broken.png"]["error"]
    for record in by_input.values():
        assert {"input", "output", "input_shape", "output_shape", "kernel", "kernel_shape", "stride",
                "padding", "dilation", "engine", "timings_ms", "status", "error"} <= set(record)
    assert [line for line in error_lines(result)] == [
        f"convcli: error: {tree / 'broken.png'}: cannot read the image (" + line.split("(", 1)[1]
        for line in error_lines(result)]
    assert "notes.txt: not an image file name" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("convcli: 4 done, 0 skipped, 1 failed")
    assert not temporaries(out)


def test_without_recursion_only_the_top_folder_and_flat_output(tree, tmp_path):
    result = convcli(["apply", tree, "-k", "box", "-o", tmp_path / "out", "--report", "none", "-q"],
                     tmp_path)
    assert result.returncode == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_box.png", "b_box.png"]
    assert result.stderr.count("\n") == 2          # the warning and the broken file; no summary (-q)


def test_glob_patterns_and_paths_from_stdin(tree, tmp_path):
    result = convcli(["apply", f"{tree}/**/*.png", "-r", "-k", "box", "-o", tmp_path / "g",
                      "--report", "none"], tmp_path)
    assert result.returncode == 1                  # broken.png matches too
    assert (tmp_path / "g" / "trip" / "deep" / "d_box.png").exists()
    listing = f"{tree / 'a.png'}\n\n{tree / 'trip' / 'c.png'}\n".encode()
    result = convcli(["apply", "-", "-k", "box", "-o", tmp_path / "s", "--report", "json"], tmp_path,
                     stdin=listing)
    assert result.returncode == 0, result.stderr
    assert [Path(r["output"]).name for r in records(result)] == ["a_box.png", "c_box.png"]
    result = convcli(["apply", f"{tree}/*.webp", "-k", "box", "-o", tmp_path / "w"], tmp_path)
    assert result.returncode == 1 and "no files match" in result.stderr


def test_duplicate_output_names_stop_before_any_work(tmp_path, rng):
    write_image(tmp_path / "x" / "same.png", rng)
    write_image(tmp_path / "y" / "same.png", rng)
    result = convcli(["apply", tmp_path / "x", tmp_path / "y", "-k", "box", "-o", tmp_path / "out"],
                     tmp_path)
    assert result.returncode == 2 and "would both write" in result.stderr
    assert not (tmp_path / "out").exists()
    result = convcli(["apply", tmp_path / "x", tmp_path / "y", "-k", "box", "-o", tmp_path / "out",
                      "--name", "{parent}-{stem}.{ext}", "--report", "none"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x-same.png", "y-same.png"]
    result = convcli(["apply", tmp_path / "x", "-k", "box", "-o", tmp_path / "o", "--name", "{size}.png"],
                     tmp_path)
    assert result.returncode == 2 and "{size}" in result.stderr


def test_existing_outputs_overwrite_and_skip_existing(tmp_path, rng):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "in" / f"{name}.png", rng)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_box.png").write_bytes(b"keep me")
    result = convcli(["apply", tmp_path / "in", "-k", "box", "-o", out, "--report", "json"], tmp_path)
    assert result.returncode == 1
    assert (out / "b_box.png").read_bytes() == b"keep me"
    assert [r["status"] for r in records(result)] == ["done", "failed", "done"]
    (out / "c_box.png").unlink()
    result = convcli(["apply", tmp_path / "in", "-k", "box", "-o", out, "--skip-existing",
                      "--report", "json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted((Path(r["output"]).name, r["status"]) for r in records(result)) == [
        ("a_box.png", "skipped"), ("b_box.png", "skipped"), ("c_box.png", "done")]
    assert "1 done, 2 skipped, 0 failed" in result.stderr
    result = convcli(["apply", tmp_path / "in", "-k", "box", "-o", out, "--overwrite", "-q",
                      "--report", "none"], tmp_path)
    assert result.returncode == 0 and Image.open(out / "b_box.png").size == (30, 24)


def test_dry_run_writes_nothing(tmp_path, rng):
    write_image(tmp_path / "in" / "a.png", rng)
    result = convcli(["apply", tmp_path / "in", "-k", "box", "-k", "sobel", "-o", tmp_path / "out",
                      "--dry-run"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.decode().count(" -> ") == 2 and not (tmp_path / "out").exists()


def test_parallel_workers_give_the_same_bytes_and_report_to_a_file(tmp_path, rng):
    for index in range(6):
        write_image(tmp_path / "in" / f"{index}.png", rng, (40, 50, 3))
    serial = convcli(["apply", tmp_path / "in", "-k", "gaussian:sigma=2", "-k", "laplacian", "-o",
                      tmp_path / "one", "-j", "1", "--report", "none"], tmp_path)
    parallel = convcli(["apply", tmp_path / "in", "-k", "gaussian:sigma=2", "-k", "laplacian", "-o",
                        tmp_path / "two", "-j", "3", "--report-file", tmp_path / "report.jsonl"],
                       tmp_path)
    assert serial.returncode == parallel.returncode == 0, parallel.stderr
    assert parallel.stdout == b""
    for first in (tmp_path / "one").iterdir():
        assert first.read_bytes() == (tmp_path / "two" / first.name).read_bytes()
    lines = (tmp_path / "report.jsonl").read_text().splitlines()
    assert len(lines) == 12 and {json.loads(line)["status"] for line in lines} == {"done"}


def test_fail_fast_stops_at_the_first_failure(tmp_path, rng):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "0-bad.png").write_bytes(b"not a png")
    for index in range(1, 4):
        write_image(tmp_path / "in" / f"{index}.png", rng)
    result = convcli(["apply", tmp_path / "in", "-k", "box", "-o", tmp_path / "out", "--fail-fast",
                      "-j", "1"], tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert "0 done, 0 skipped, 1 failed, 3 not started" in result.stderr


def test_one_image_streams_through_stdin_and_stdout(tmp_path):
    data = (SAMPLES / "coins.png").read_bytes()
    result = convcli(["apply", "png:-", "-k", "sobel", "-o", "png:-", "--report", "none"], tmp_path,
                     stdin=data)
    assert result.returncode == 0, result.stderr
    streamed = tmp_path / "streamed.png"
    streamed.write_bytes(result.stdout)
    from_file = convcli(["apply", SAMPLES / "coins.png", "-k", "sobel", "-o", tmp_path / "file.png",
                         "--report", "none"], tmp_path)
    assert from_file.returncode == 0
    assert np.array_equal(np.asarray(Image.open(streamed)), np.asarray(Image.open(tmp_path / "file.png")))
    result = convcli(["apply", "png:-", "-k", "sobel", "-o", "npy:-", "--report", "json"], tmp_path,
                     stdin=data)
    assert result.returncode == 2 and "--report-file" in result.stderr


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _workers(pid: int) -> list[int]:
    """Worker processes: the children of the fork server, itself a child of convcli."""
    for child in _children(pid):
        try:
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                return _children(child)
        except FileNotFoundError:
            continue
    return []


def _wait_for_two_workers(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(_workers(process.pid)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(_workers(process.pid)) < 2:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"convcli did not start two workers: {stderr.decode()}")


@pytest.fixture
def slow_inputs(tmp_path, rng) -> Path:
    """Three images that each take seconds: 2600x2600 gray under a dense 61x61 kernel on the
    direct path (about 2 s each on one thread; the FFT path would make them quick)."""
    folder = tmp_path / "big"
    for index in range(3):
        write_image(folder / f"{index}.png", rng, (2600, 2600))
    spec = tmp_path / "dense.yaml"
    spec.write_text(json.dumps({"weights": (rng.random((61, 61)) / 1860).round(6).tolist()}))
    return folder


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_worker_fails_only_its_file_and_leaves_nothing_half_written(tmp_path, slow_inputs):
    out = tmp_path / "out"
    env = subprocess_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "convcli", "apply", slow_inputs, "-k", tmp_path / "dense.yaml",
         "--engine", "direct", "-o", out,
         "-j", "2", "--report", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _wait_for_two_workers(process)
    time.sleep(0.5)                                  # both workers are inside their first image
    victim = _workers(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr.decode()
    statuses = [json.loads(line)["status"] for line in stdout.decode().splitlines()]
    assert sorted(statuses) == ["done", "done", "failed"]
    assert "worker process died (killed by signal 9)" in stderr.decode()
    assert len(list(out.glob("*.png"))) == 2 and not temporaries(out)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_batch_cleanly_with_exit_130(tmp_path, slow_inputs, stop):
    out = tmp_path / "out"
    env = subprocess_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "convcli", "apply", slow_inputs, "-k", tmp_path / "dense.yaml",
         "--engine", "direct", "-o", out,
         "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    _wait_for_two_workers(process)
    time.sleep(1.0)
    os.killpg(process.pid, stop) if stop == signal.SIGINT else process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert "stopped by a signal" in stderr.decode()
    assert not temporaries(out) if out.exists() else True
    for written in out.glob("*.png") if out.exists() else []:
        assert Image.open(written).size == (2600, 2600)     # whole files only


def test_a_dead_workers_temporary_file_is_removed(tmp_path):
    """A worker killed while writing leaves ``.{name}.tmp-*``; its outcome removes it."""
    from convcli.batch import Task, _worker_died
    from convcli.images import atomic_write
    from convcli.inputs import Source
    from convcli.kernels import resolve
    from convcli.pipeline import ApplyOptions, Job

    destination = tmp_path / "a_box.png"
    with pytest.raises(KeyboardInterrupt):                  # a write cut short ...
        atomic_write(destination, lambda f: (_ for _ in ()).throw(KeyboardInterrupt()))
    (tmp_path / ".a_box.png.tmp-k1ll3d").write_bytes(b"half")  # ... and one a SIGKILL left
    (tmp_path / ".unrelated").write_bytes(b"keep")
    task = Task(Source(tmp_path / "a.png"), [Job(Source(tmp_path / "a.png"), resolve("box"),
                                                 destination)], ApplyOptions())
    status, message = _worker_died(task, "worker process died (killed by signal 9)")
    assert status == "failed" and message.endswith("a.png: worker process died (killed by signal 9)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".unrelated"]
