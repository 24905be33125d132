"""Batches on a Dask distributed cluster (``--scheduler``): a LocalCluster of two worker
processes on loopback stands in for a real one (issue #15)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

distributed = pytest.importorskip("distributed")

from conftest import run_cli, subprocess_env  # noqa: E402

pytestmark = pytest.mark.slow
TIMINGS = ("timings_ms", "megapixels_per_s", "peak_memory_mb")  # differ from run to run


@pytest.fixture(scope="module")
def scheduler():
    """The address of a two-worker cluster, one thread each. A task may be on a worker that
    dies once and be tried again; the second death fails it (Dask's default allows 3), and
    each worker holds only the task it runs, so a death costs no bystander a try."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           host="127.0.0.1", dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def write_images(folder: Path, count: int, rng, shape=(36, 48, 3)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        paths.append(folder / f"{index}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def convcli(args, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], cwd=cwd,
                          env=subprocess_env(**env), capture_output=True, text=True, timeout=300)


def comparable(report: str, out: str) -> list[dict]:
    """The report's records without timings, their outputs relative to ``out``, in order."""
    records = []
    for line in report.splitlines():
        record = {k: v for k, v in json.loads(line).items() if k not in TIMINGS}
        record["output"] = str(Path(record["output"]).relative_to(out))
        for layer in record.get("layers") or []:
            layer.pop("ms"), layer.pop("compile_ms", None)
        records.append(record)
    return sorted(records, key=lambda r: r["output"])


def error_lines(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if line.startswith("convcli: error:"))


def temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp-*"))


def test_a_cluster_run_writes_what_a_local_run_writes(scheduler, tmp_path, rng):
    """The real command line: the same files with the same bytes, the same report (timings
    apart), the same error line for a corrupt file, exit 1 for both; relative paths. 17
    inputs on 2 worker threads: tasks of 2 files."""
    write_images(tmp_path / "in", 14, rng)
    write_images(tmp_path / "in" / "sub", 2, rng, (30, 20))
    (tmp_path / "in" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 8)
    common = ["in", "-r", "-k", "gaussian:sigma=1.5", "-k", "sobel", "--engine", "direct",
              "--report", "json"]
    local = convcli(["apply", *common, "-o", "local"], tmp_path)
    remote = convcli(["apply", *common, "-o", "remote", "--scheduler", scheduler], tmp_path)
    assert local.returncode == remote.returncode == 1, remote.stderr
    made = sorted(str(p.relative_to(tmp_path / "local")) for p in (tmp_path / "local").rglob("*"))
    assert made == sorted(str(p.relative_to(tmp_path / "remote"))
                          for p in (tmp_path / "remote").rglob("*"))
    assert len([name for name in made if name.endswith(".png")]) == 32
    for name in made:
        if name.endswith(".png"):
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    assert comparable(remote.stdout, "remote") == comparable(local.stdout, "local")
    assert error_lines(remote.stderr) == error_lines(local.stderr) == [
        error_lines(local.stderr)[0]]
    assert "in/corrupt.png: " in error_lines(remote.stderr)[0]
    assert remote.stderr.strip().splitlines()[-1].startswith("convcli: 16 done, 0 skipped, 1 failed")
    assert not temporaries(tmp_path / "remote")


@pytest.fixture
def die_first(monkeypatch):
    """Tasks run ``cluster_tasks.die_first``: inputs named die-once*/die-always* kill their
    worker process on the first / every try."""
    import cluster_tasks
    from convcli import cluster

    monkeypatch.setattr(cluster, "run_task", cluster_tasks.die_first)


def test_a_task_whose_worker_dies_runs_again_elsewhere(scheduler, tmp_path, rng, capsys,
                                                       die_first):
    inputs = write_images(tmp_path / "in", 3, rng)
    inputs[0].rename(tmp_path / "in" / "die-once.png")
    code, out, err = run_cli(["apply", tmp_path / "in", "-k", "box", "-o", tmp_path / "out",
                              "--report", "json", "--scheduler", scheduler], capsys)
    assert code == 0, err
    assert (tmp_path / "in" / "die-once.png.tried").exists()         # it did die once
    assert sorted(json.loads(line)["status"] for line in out.splitlines()) == ["done"] * 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1_box.png", "2_box.png", "die-once_box.png"]                # and no temporary file
    assert "convcli: 3 done, 0 skipped, 0 failed" in err


def test_a_file_whose_worker_always_dies_fails_alone(scheduler, tmp_path, rng, capsys, die_first,
                                                     monkeypatch):
    inputs = write_images(tmp_path / "in", 3, rng)
    inputs[0].rename(tmp_path / "in" / "die-always.png")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler)          # instead of --scheduler
    code, out, err = run_cli(["apply", tmp_path / "in", "-k", "box", "-o", tmp_path / "out",
                              "--report", "json"], capsys)
    assert code == 1, err
    by_input = {Path(r["input"]).name: r for r in map(json.loads, out.splitlines())}
    assert {name: r["status"] for name, r in by_input.items()} == {
        "die-always.png": "failed", "1.png": "done", "2.png": "done"}
    [line] = error_lines(err)
    assert line.startswith(f"convcli: error: {tmp_path / 'in' / 'die-always.png'}: worker "
                           "process died, 2 time(s) on the cluster (the last at tcp://127.0.0.1:")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_box.png", "2_box.png"]


def test_a_task_of_several_files_whose_worker_always_dies_is_tried_file_by_file(
        scheduler, tmp_path, rng, capsys, die_first, monkeypatch):
    """Tasks of 3 files: the one with die-always fails twice, then each of its files runs as
    a task of its own, and only die-always fails."""
    from convcli import cluster

    monkeypatch.setattr(cluster, "TASKS_PER_THREAD", 1)
    inputs = write_images(tmp_path / "in", 6, rng)
    inputs[4].rename(tmp_path / "in" / "die-always.png")
    code, out, err = run_cli(["apply", tmp_path / "in", "-k", "box", "-o", tmp_path / "out",
                              "--report", "json", "--scheduler", scheduler], capsys)
    assert code == 1, err
    statuses = {Path(r["input"]).name: r["status"] for r in map(json.loads, out.splitlines())}
    assert statuses == {"0.png": "done", "1.png": "done", "2.png": "done", "3.png": "done",
                        "die-always.png": "failed", "5.png": "done"}
    assert len(error_lines(err)) == 1 and "die-always.png: worker process died" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{index}_box.png" for index in (0, 1, 2, 3, 5)]


def write_streamable(path: Path, rng, shape=(130, 45, 3)) -> Path:
    """A small RGB TIFF or PNG (by ``path``'s suffix) to stream in many strips."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    if path.suffix == ".png":
        Image.fromarray(pixels).save(path)
    else:
        tifffile.imwrite(path, pixels)
    return path


@pytest.fixture
def small_strips(monkeypatch):
    """Strips of 16 output rows, planned here (the client): a 130-row image is 9 strips."""
    from convcli import stream

    monkeypatch.setattr(stream, "TILE", 16)
    monkeypatch.setattr(stream, "PNG_ROWS", 16)


@pytest.mark.parametrize("name, fmt, geometry", [
    ("in.tif", "tiff", ["--pad-mode", "circular"]),
    ("in.png", "png", ["--pad-mode", "reflect", "--normalize", "abs"]),
    ("in.tif", "png", ["--pad-mode", "zeros", "--stride", "2", "--normalize", "abs"]),
    ("in.png", "tiff", ["--pad-mode", "circular", "--dilation", "2"]),
])
def test_an_image_past_max_memory_streams_its_strips_on_the_cluster(
        scheduler, tmp_path, rng, capsys, small_strips, name, fmt, geometry):
    """Its strips are tasks on the two workers; the output has a local streamed run's
    bytes, and the report is the local one's, the engine saying where it ran."""
    source = write_streamable(tmp_path / "in" / name, rng)
    common = ["apply", source, "-k", "gaussian:sigma=1.5", "-k", "sobel", *geometry,
              "--format", fmt, "--stream", "--max-memory", "1K", "--report", "json"]
    code, local, err = run_cli([*common, "-o", tmp_path / "local"], capsys)
    assert code == 0, err
    code, remote, err = run_cli([*common, "-o", tmp_path / "remote", "--scheduler", scheduler],
                                capsys)
    assert code == 0, err
    made = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(made) == 2 and made == sorted(p.name for p in (tmp_path / "remote").iterdir())
    for output in made:
        assert (tmp_path / "local" / output).read_bytes() == \
            (tmp_path / "remote" / output).read_bytes()
    here, there = comparable(local, str(tmp_path / "local")), comparable(remote,
                                                                          str(tmp_path / "remote"))
    for record in there:
        assert record["engine"].endswith(" on dask") and record["strips"] > 4
        record["engine"] = record["engine"].removesuffix(" on dask")
        for layer in record["layers"]:
            layer["engine"] = layer["engine"].removesuffix(" on dask")
    assert there == here


@pytest.mark.parametrize("name", ["fail-once.tif", "die-once.png"])
def test_a_strip_that_raised_or_whose_worker_died_runs_again(scheduler, tmp_path, rng, capsys,
                                                             small_strips, monkeypatch, name):
    """Every strip raises on its first try, or the first strip's worker dies: each runs
    again, and the output is whole."""
    import cluster_tasks
    from convcli import cluster

    monkeypatch.setattr(cluster, "run_strip", cluster_tasks.strip_fails)
    source = write_streamable(tmp_path / "in" / name, rng)
    common = ["apply", source, "-k", "box", "--format", "tiff", "--stream", "--max-memory", "1K",
              "-q"]
    assert run_cli([*common, "-o", tmp_path / "local"], capsys)[0] == 0
    code, _, err = run_cli([*common, "-o", tmp_path / "remote", "--scheduler", scheduler], capsys)
    assert code == 0, err
    if name.startswith("fail-once"):
        assert len(list(source.parent.glob(f"{name}.*.tried"))) == 9       # all 9 strips
    else:
        assert (source.parent / f"{name}.died").exists()
    output = f"{Path(name).stem}_box.tif"
    assert (tmp_path / "remote" / output).read_bytes() == (tmp_path / "local" / output).read_bytes()
    assert not temporaries(tmp_path / "remote")


def test_a_streamed_image_that_fails_on_the_cluster_is_one_line_and_nothing_written(
        scheduler, tmp_path, rng, capsys, small_strips, monkeypatch):
    """A strip that keeps raising fails its image with one line (the other file is done);
    damaged image data is the local run's line, said once."""
    import cluster_tasks
    from convcli import cluster

    monkeypatch.setattr(cluster, "run_strip", cluster_tasks.strip_fails)
    failing = write_streamable(tmp_path / "in" / "fail-always.tif", rng)
    damaged = write_streamable(tmp_path / "in" / "damaged.png", rng)
    data = bytearray(damaged.read_bytes())
    at = data.index(b"IDAT") + 4
    length = int.from_bytes(data[at - 8:at - 4], "big")
    data[at + length // 2:at + length // 2 + 100] = b"\xff" * 100     # inflating fails there
    data[at + length:at + length + 4] = zlib.crc32(bytes(data[at - 4:at + length])).to_bytes(4, "big")
    damaged.write_bytes(bytes(data))
    fine = write_images(tmp_path / "in", 1, rng)[0]
    common = ["-k", "box", "--format", "png", "--stream", "--max-memory", "1K"]
    _, _, local_err = run_cli(["apply", damaged, *common, "-o", tmp_path / "local"], capsys)
    code, out, err = run_cli(["apply", failing, damaged, fine, *common, "-o", tmp_path / "out",
                              "--scheduler", scheduler, "--report", "json"], capsys)
    assert code == 1, err
    statuses = {Path(r["input"]).name: r["status"] for r in map(json.loads, out.splitlines())}
    assert statuses == {"fail-always.tif": "failed", "damaged.png": "failed", "0.png": "done"}
    assert error_lines(err) == sorted([
        f"convcli: error: {failing}: the cluster could not run it (OSError: strip 0-16 failed "
        "on purpose)", *error_lines(local_err)])
    assert "cannot decode the image" in error_lines(local_err)[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_box.png"]
    assert not temporaries(tmp_path / "out")


def test_an_image_as_a_dask_array_of_strips(scheduler, tmp_path, rng, capsys, small_strips):
    """``cluster.image_array``: a dask array, one block per strip, computed on the cluster:
    a local streamed run's TIFF output."""
    import tifffile

    from convcli.cluster import image_array
    from convcli.pipeline import ApplyOptions

    source = write_streamable(tmp_path / "in.png", rng)
    assert run_cli(["apply", source, "-k", "gaussian:sigma=1.5", "--pad-mode", "circular",
                    "--stride", "2", "--format", "tiff", "--stream", "--max-memory", "1K",
                    "-o", tmp_path / "local", "-q"], capsys)[0] == 0
    array = image_array(source, "gaussian:sigma=1.5",
                        ApplyOptions(fmt="tiff", pad_mode="circular", stride=(2, 2),
                                     max_memory=1024))
    assert array.shape == (3, 65, 23) and array.dtype == np.float32
    assert array.chunks[1] == (16, 16, 16, 16, 1)
    with distributed.Client(scheduler, set_as_default=False) as client:
        maps = client.compute(array).result()
    expected = tifffile.imread(tmp_path / "local" / "in_gaussian-sigma-1.5.tif")
    assert np.array_equal(np.moveaxis(maps, 0, -1), expected)


def test_files_are_grouped_into_tasks_of_a_useful_size():
    from convcli.cluster import MAX_FILES_PER_TASK, TASK_BYTES, group_files

    small, large = TASK_BYTES // 5, TASK_BYTES * 3
    assert group_files([small] * 200, threads=2) == [
        list(range(start, start + 5)) for start in range(0, 200, 5)]
    assert group_files([small] * 12, threads=2) == [[i] for i in range(12)]   # 4 per thread
    assert group_files([small] * 24, threads=2) == [[3 * i, 3 * i + 1, 3 * i + 2]
                                                    for i in range(8)]
    assert group_files([large, small, small, large] + [small] * 12, threads=1) == [
        [0], [1, 2], [3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert max(map(len, group_files([1] * 1000, threads=1))) == MAX_FILES_PER_TASK


def test_warnings_from_the_workers_are_printed_here(scheduler, tmp_path, rng, capsys):
    """A worker's warning (here: values clipped) is this run's, with the path as given."""
    write_images(tmp_path / "in", 1, rng)
    code, _, err = run_cli(["apply", tmp_path / "in" / "0.png", "-k", "box", "--scale", "3",
                            "-o", tmp_path / "out", "--scheduler", scheduler, "-q"], capsys)
    assert code == 0, err
    assert err.startswith(f"convcli: warning: {tmp_path / 'out' / '0_box.png'}: ")
    assert "of the values were clipped" in err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_bad_or_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, rng, capsys, monkeypatch):
    from convcli import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    write_images(tmp_path / "in", 1, rng)
    silent = socket.socket()                   # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = _closed_port()
    with silent:
        for address, says in ((f"tcp://127.0.0.1:{port}", "cannot connect (Connection refused)"),
                              ("http://127.0.0.1:8786", "unknown scheme http://; give SCHEME://"),
                              ("tcp://127.0.0.1", "not an address; give SCHEME://HOST:PORT"),
                              (f"127.0.0.1:{silent.getsockname()[1]}", "not a Dask scheduler")):
            started = time.monotonic()
            code, out, err = run_cli(["apply", tmp_path / "in", "-k", "box", "-o",
                                      tmp_path / "out", "--scheduler", address], capsys)
            assert time.monotonic() - started < 4
            assert code == 2 and err.count("\n") == 1 and says in err, err
            assert err.startswith("convcli: error: --scheduler ")
    assert not list((tmp_path / "out").iterdir())


def test_a_scheduler_without_workers_or_with_other_versions_is_exit_2(scheduler, tmp_path, rng,
                                                                      capsys, monkeypatch):
    import convcli
    from convcli import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    write_images(tmp_path / "in", 1, rng)
    arguments = ["apply", tmp_path / "in", "-k", "box", "-o", tmp_path / "out", "--scheduler"]
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as empty:
        code, _, err = run_cli([*arguments, empty.scheduler_address], capsys)
    assert code == 2 and "the scheduler has no workers (after 1 s); start some with " \
                          f"`dask worker {empty.scheduler_address}`" in err
    monkeypatch.setattr(convcli, "__version__", "0.0.1")
    code, _, err = run_cli([*arguments, scheduler], capsys)
    assert "has convcli 0.1.0; every worker needs convcli 0.0.1" in err, err


def test_usage_errors_before_any_work(scheduler, tmp_path, rng, capsys, monkeypatch):
    write_images(tmp_path / "in", 1, rng)
    source = tmp_path / "in" / "0.png"
    for arguments, says in (
            (["png:-", "-o", tmp_path / "out"], "cannot read this process's stdin or write its "
                                                "stdout (png:-)"),
            ([source, "-o", "png:-"], "(-o png:-)"),
            ([source, "-o", tmp_path / "out", "-j", "2"], "--jobs sets this machine's worker")):
        code, _, err = run_cli(["apply", *arguments, "-k", "box", "--scheduler", scheduler],
                               capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err
    monkeypatch.setitem(sys.modules, "distributed", None)       # as if Dask were not installed
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a, _real=__import__("importlib.util").util.find_spec:
                        None if name == "distributed" else _real(name, *a))
    code, _, err = run_cli(["apply", source, "-k", "box", "-o", tmp_path / "out", "--scheduler",
                            scheduler], capsys)
    assert code == 2 and err == ("convcli: error: --scheduler runs the batch on a Dask cluster, "
                                 "and Dask's distributed package is not installed: pip install "
                                 "'convcli[dask]'\n")
    code, _, err = run_cli(["apply", source, "-k", "box", "-o", tmp_path / "out", "--scheduler",
                            "local", "-q"], capsys)
    assert code == 0 and (tmp_path / "out" / "0_box.png").exists(), err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_the_tasks_and_exits_130(scheduler, tmp_path, rng, stop):
    """Ctrl-C or SIGTERM: exit 130 with the summary at once; tasks not started never run, a
    running one ends with its whole file (Dask cannot interrupt it)."""
    write_images(tmp_path / "big", 16, rng, (1400, 1400))  # ~0.8 s each: work left at 2 s
    spec = tmp_path / "dense.yaml"
    spec.write_text(json.dumps({"weights": (rng.random((61, 61)) / 1860).round(6).tolist()}))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "convcli", "apply", tmp_path / "big", "-k", spec, "--engine",
         "direct", "-o", out, "--scheduler", scheduler], cwd=tmp_path, env=subprocess_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(2.0)                              # connected, the first two files running
    os.killpg(process.pid, stop) if stop == signal.SIGINT else process.send_signal(stop)
    stopped = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert time.monotonic() - stopped < 5
    summary = stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("convcli: stopped by a signal; "), summary
    done = int(summary.split("; ")[1].split()[0])
    deadline = time.monotonic() + 30             # the running ones finish on their workers
    while temporaries(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    written = sorted(out.glob("*.png"))
    assert len(written) <= done + 2 and not temporaries(out)      # two workers, one task each
    for path in written:
        assert Image.open(path).size == (1400, 1400)
