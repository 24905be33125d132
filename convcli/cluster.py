"""Batches, and images bigger than a machine, on an existing Dask distributed cluster
(``convcli apply --scheduler ADDRESS``).

``ClusterPool`` has ``WorkerPool``'s shape: ``run(tasks)`` yields a ``TaskResult`` per task
in completion order and ``close()`` stops what is left, so the batch driver shares its
report, summary, exit codes, fail-fast and Ctrl-C handling between the two. The input files
are Dask tasks (a few small ones to a task) running ``batch.process_task`` (``run_task``
around it) on the workers:

* The workers import convcli (the same version: checked on connecting) and read and write
  the files at the same absolute paths as this process (a shared file system). Paths are
  sent absolute, and the records and messages that come back are spelled as given here,
  so the report and the error lines are a local run's.
* A worker that dies fails nothing by itself: the scheduler runs its task elsewhere, up to
  its ``distributed.scheduler.allowed-failures`` (3 by default); a task that raised is tried
  again ``RETRIES`` times. Only then is the file failed, with one line. The temporary files
  a killed writer left are removed either way (the scheduler's ``remove-worker`` event
  names the tasks the dead worker was running).
* An output that did not exist when the task was sent may be replaced by that task: a worker
  that died after writing it (or whose result was lost before it was fetched) has its task
  run again, and the rerun must not fail on its own first attempt's file.
* Each worker process sets itself up once (``batch._prepare_process``: warnings as convcli
  lines, the engine's threads its share of its host's cores); what a task prints on stderr
  (warnings) is sent back and printed here, as a local worker's would be.
* Ctrl-C (or --fail-fast) cancels every task not yet run; one that is running finishes its
  files (Dask cannot interrupt a running task), which the report does not list, writing
  each whole or not at all as always.

Small files go several to a task (``group_files``): each task costs ~8-9 ms of CPU between
client, scheduler and worker, as much as filtering a 128x128 PNG. A task of several files
is one result (its files' progress comes at once) and one unit of retry; when its workers
keep dying, its files are tried again one per task, so only the one to blame fails.

One image past ``--max-memory`` (issue #15: "one image can span the cluster") is not a task:
this process streams it (``stream.stream_image``, the TIFF or PNG writer, atomic as always)
and its strips are the tasks (``ClusterPool.strips``, ``run_strip``). Each task opens the
file on its worker, runs the ``strips.RowFilter`` this process planned (pickled with its
engine paths decided here, so every strip takes the path a local run takes) on its output
rows, and returns them as (C, n, W) float32; this process writes them in order, with
``STRIPS_AHEAD`` tasks per cluster thread out at a time, so only a few strips are held
anywhere. The output is a local streamed run's, byte for byte. A task that raised runs
again ``RETRIES`` times and a dead worker's is rescheduled, as a file's; a file that cannot
be read fails at once, with a local run's line; Ctrl-C cancels the strips not yet made. A
worker keeps its readers of the image between strips (a PNG decodes only forwards).
``image_array`` gives the same strips as a ``dask.array`` for the Python API.

This is deliberately not ``dask.array.map_overlap``: its halo is one fixed depth per axis
and its borders are a few fixed modes, while convcli's strips read what ``RowFilter``
computes for each range of output rows: halos through every layer of a stack, stride and
dilation (a strip's input rows are not its output rows plus a margin), and all of
convcli's border modes (circular padding makes the top strip read the bottom rows). The
row planning that makes a local streamed run equal to the in-memory one is reused as it is
rather than re-derived for Dask.

Nothing here imports Dask at module level: ``convcli --help`` and local runs never load it,
and a missing Dask is one line (``check_installed``) rather than a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import os
import re
import socket
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from .errors import UsageError
from .workers import TaskResult

__all__ = ["ClusterPool", "parse_address", "check_installed", "run_task", "run_strip",
           "image_array", "LOCAL", "RETRIES"]

LOCAL = "local"                 # --scheduler local: this machine's process pool
SCHEMES = ("tcp", "tls", "ws", "wss")
DEFAULT_SCHEME = "tcp"
RETRIES = 2                     # reruns of a task that raised (a worker's death is counted apart)
# Files per Dask task. A task costs ~8-9 ms of CPU between client, scheduler and worker
# (measured on a 2-core LocalCluster of 2 workers, whole commands): one file per task made
# 1000 PNGs of 128x128 run at 70 files/s, tasks of 16 at 133 (the local pool: 140); 200 of
# 512x512, 30 files/s against 34 in tasks of 5 (README, "Batches on a Dask cluster"). The
# size is capped so that every worker thread still gets TASKS_PER_THREAD tasks (balance at
# the end, steady progress) and a worker's death or Ctrl-C concerns a second or so of work.
TASK_BYTES = 2_000_000          # input bytes (times outputs per input) gathered into one task
MAX_FILES_PER_TASK = 16
TASKS_PER_THREAD = 4
STRIPS_AHEAD = 2                # strip tasks out at a time per thread of the cluster
CONNECT_TIMEOUT_S = 5.0         # to reach the scheduler, hear it answer, and find a worker
VALID = ("SCHEME://HOST:PORT with SCHEME tcp, tls, ws or wss (e.g. tcp://10.0.0.5:8786, "
         "the address `dask scheduler` prints), HOST:PORT for tcp, or 'local'")
_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]@]+):(?P<port>[0-9]+)/?$")


def parse_address(text: str) -> str | None:
    """``--scheduler``'s value -> ``scheme://host:port`` (None for ``local``), without Dask."""
    spelled = text.strip()
    if spelled.lower() == LOCAL:
        return None
    match = _ADDRESS.match(spelled)
    scheme = (match and match["scheme"] or DEFAULT_SCHEME).lower()
    if match is None or scheme not in SCHEMES or not 0 < int(match["port"]) < 65536:
        why = (f"unknown scheme {scheme}://" if match and scheme not in SCHEMES
               else "port out of range" if match else "not an address")
        raise UsageError(f"--scheduler {text!r}: {why}; give {VALID}")
    return f"{scheme}://{match['host']}:{int(match['port'])}"


def check_installed() -> None:
    """A one-line error unless Dask's distributed scheduler can be imported (nothing imported)."""
    if importlib.util.find_spec("distributed") is None:
        raise UsageError("--scheduler runs the batch on a Dask cluster, and Dask's distributed "
                         "package is not installed: pip install 'convcli[dask]'")


def _import_distributed():
    check_installed()
    try:
        import distributed
    except ImportError as error:
        raise UsageError(f"--scheduler: Dask's distributed package does not import ({error}); "
                         "pip install 'convcli[dask]'") from None
    return distributed


# ---- on the workers ------------------------------------------------------------------------

_setup_lock = threading.Lock()
_prepared = False


class _TaskStderr:
    """``sys.stderr`` of a worker process: what a task's thread prints goes to that task's
    buffer (sent back with its result), everything else to the worker's own stderr."""

    def __init__(self, stream):
        self._stream = stream
        self._local = threading.local()

    def capture(self) -> io.StringIO:
        self._local.buffer = io.StringIO()
        return self._local.buffer

    def release(self) -> str:
        buffer, self._local.buffer = getattr(self._local, "buffer", None), None
        return buffer.getvalue() if buffer is not None else ""

    def write(self, text: str) -> int:
        buffer = getattr(self._local, "buffer", None)
        return (buffer if buffer is not None else self._stream).write(text)

    def flush(self) -> None:
        if getattr(self._local, "buffer", None) is None:
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _prepare_worker(threads: int) -> None:
    """Once per worker process: ``batch._prepare_process`` and the stderr of tasks; every
    task then sets the engine's threads (its share may change as workers come and go)."""
    global _prepared
    from .engine import set_threads

    with _setup_lock:
        if not _prepared:
            from .batch import _prepare_process

            _prepare_process(threads, True)      # notes of a compile belong to its log
            if not isinstance(sys.stderr, _TaskStderr):
                sys.stderr = _TaskStderr(sys.stderr)
            _prepared = True
    set_threads(threads)


def _engine_threads(share: dict[str, int]) -> int:
    """This worker's threads for the engine: its host's cores over the Dask threads that all
    workers on that host run (each runs one task, and the engine's threads, at a time)."""
    from distributed import get_worker

    from .batch import available_cores

    worker = get_worker()
    on_host = share.get(worker.address) or worker.state.nthreads
    return max(1, available_cores() // max(1, on_host))


class _Said:
    """What a task printed on stderr, once it has ended."""

    text = ""


@contextlib.contextmanager
def _task_on_worker(share: dict[str, int]):
    """Set this worker up for a task (``_prepare_worker``) and keep what the task prints on
    stderr: the ``_Said`` it yields holds it once the task has ended."""
    _prepare_worker(_engine_threads(share))
    stderr = sys.stderr
    capturing = isinstance(stderr, _TaskStderr)
    said = _Said()
    if capturing:
        stderr.capture()
    try:
        yield said
    finally:
        said.text = stderr.release() if capturing else ""


def run_task(task, share: dict[str, int]) -> tuple[str, object, str]:
    """One file on a worker: ``batch.process_task(task)`` -> (status, value, its stderr)."""
    from .batch import process_task

    with _task_on_worker(share) as said:
        status, value = process_task(task)
    return status, value, said.text


def run_tasks(tasks: list, share: dict[str, int], run=None) -> list[tuple[str, object, str]]:
    """A worker's Dask task: ``run`` (default ``run_task``) for each of a few files."""
    run = run or run_task
    return [run(task, share) for task in tasks]


# One image past --max-memory: its strips are tasks (``ClusterPool.strips``). A worker keeps
# its open readers of the image between strips: a PNG's rows come only in file order, so a
# reader that stopped above a strip's rows goes on from there instead of from the top.
_readers_lock = threading.Lock()
_readers: dict[tuple, list] = {}     # (path, gray, mtime, size) -> readers not in use
READERS_KEPT = 4                     # per image and worker (one per thread is enough)


def run_strip(row_filter, path: str, gray: bool, low: int, first: int, stop: int,
              share: dict[str, int]) -> tuple[str, object, float, float, str]:
    """One strip of a streamed image on a worker: output rows [first, stop) of
    ``row_filter`` (the client's, engine paths decided) from the image at ``path``, whose
    lowest row it reads is ``low`` -> ("done", (C, n, W) float32, convolve ms, read ms, its
    stderr), or ("failed", one-line message, 0, 0, stderr) for a file that cannot be read
    (no use trying again). Anything else raises, and Dask runs it again."""
    from .errors import ConvcliError

    with _task_on_worker(share) as said:
        try:
            maps, convolve_ms, read_ms = filter_strip(row_filter, path, gray, low, first, stop)
            result = ("done", maps, convolve_ms, read_ms)
        except ConvcliError as error:
            result = ("failed", str(error), 0.0, 0.0)
    return (*result, said.text)


def filter_strip(row_filter, path: str, gray: bool, low: int, first: int,
                 stop: int) -> tuple[object, float, float]:
    """Output rows [first, stop) of ``row_filter`` on the image at ``path`` (its reader kept
    for the next strip) -> ((C, n, W) float32, convolve ms, read ms)."""
    import time

    import numpy as np

    key, reader = _take_reader(path, gray, low)
    try:
        read_before = reader.read_ms
        started = time.perf_counter()
        with np.errstate(all="ignore"):          # NaN spreads, as in memory
            maps = row_filter.run(reader, first, stop)
        read_ms = reader.read_ms - read_before
        convolve_ms = (time.perf_counter() - started) * 1e3 - read_ms
    except BaseException:
        reader.close()                           # it failed half-way: start afresh next time
        raise
    _give_back(key, reader)
    return maps, convolve_ms, read_ms


def _take_reader(path: str, gray: bool, low: int):
    """(its key, a reader of ``path``): a kept one that can go on to row ``low`` without
    starting over (the furthest on), else any kept one, else a new one."""
    from .stream import open_rows, _NotStreamable
    from .errors import FileFailure

    status = os.stat(path)
    key = (path, gray, status.st_mtime_ns, status.st_size)
    with _readers_lock:
        idle = _readers.get(key, [])
        if idle:
            on_the_way = [r for r in idle if r.first_row_in_order <= low]
            reader = (max(on_the_way, key=lambda r: r.first_row_in_order) if on_the_way
                      else idle[-1])
            idle.remove(reader)
            return key, reader
    try:
        return key, open_rows(Path(path), gray=gray)
    except _NotStreamable as error:      # changed since the client planned it
        raise FileFailure(f"{path}: cannot be streamed any more ({error})") from None


def _give_back(key: tuple, reader) -> None:
    with _readers_lock:
        for other in [k for k in _readers if k[:2] == key[:2] and k != key]:
            for stale in _readers.pop(other):          # the file changed
                stale.close()
        idle = _readers.setdefault(key, [])
        idle.append(reader)
        while len(idle) > READERS_KEPT:
            idle.pop(0).close()


def forget_readers(path: str) -> None:
    """Close a worker's readers of ``path`` (the image is done)."""
    with _readers_lock:
        for key in [k for k in _readers if k[0] == path]:
            for reader in _readers.pop(key):
                reader.close()


def image_array(path, operation, options=None):
    """One image's output as a ``dask.array`` (C, H_out, W_out) float32, in strips of rows
    (``dask.array.concatenate`` of one ``from_delayed`` block per strip), for the Python API:
    computed with any Dask scheduler (a ``distributed.Client``'s workers need the file at the
    same absolute path). ``operation`` is a ``-k`` spec or an ``Operation`` or ``Stack``;
    ``options`` an ``ApplyOptions`` (pad mode, stride, ..., and ``max_memory`` sizes the
    strips as a streamed run's TIFF output). A file that cannot be streamed raises
    ``UsageError`` saying why. The numbers are a streamed run's (see ``strips``)."""
    import dask
    import dask.array as da
    import numpy as np

    from .kernels import resolve
    from .pipeline import ApplyOptions
    from .stream import TILE, _NotStreamable, open_rows, row_filter_for, strip_height

    options = options or ApplyOptions(fmt="tiff")
    if isinstance(operation, str):
        operation = resolve(operation)
    path = Path(os.path.abspath(path))
    try:
        reader = open_rows(path, gray=options.gray)
    except _NotStreamable as error:
        raise UsageError(f"{path}: cannot be filtered in strips ({error})") from None
    try:
        shape = reader.shape
    finally:
        reader.close()
    from types import SimpleNamespace

    job = SimpleNamespace(operation=operation)           # what row_filter_for reads of a job
    row_filter, _ = row_filter_for(job, shape, path, options)
    row_filter.decide_paths()
    channels, _, width = row_filter.output_shape
    part = dask.delayed(_strip_maps, pure=True)
    blocks = [da.from_delayed(part(row_filter, str(path), options.gray, int(strip.input_rows[0]),
                                   *strip.out_rows, dask_key_name=f"convcli-strip-{path.name}"
                                   f"-{strip.out_rows[0]}-{uuid.uuid4().hex[:8]}"),
                              (channels, strip.out_rows[1] - strip.out_rows[0], width), np.float32)
              for strip in row_filter.strips(strip_height(row_filter, options.max_memory, TILE))]
    return da.concatenate(blocks, axis=1)


def _strip_maps(row_filter, path: str, gray: bool, low: int, first: int, stop: int):
    return filter_strip(row_filter, path, gray, low, first, stop)[0]


def worker_version() -> str:
    """The convcli version a worker imports (checked against this one on connecting)."""
    from . import __version__

    return __version__


# ---- here ----------------------------------------------------------------------------------

class ClusterPool:
    """The batch's tasks on the Dask cluster whose scheduler is at ``address``.

    Connecting raises ``UsageError`` (exit 2, one line) when the scheduler cannot be reached
    within ``timeout`` seconds, does not answer as a Dask scheduler, has no worker, or has
    workers without this convcli.
    """

    def __init__(self, address: str, *, retries: int = RETRIES, timeout: float | None = None,
                 function=None, strip_function=None):
        distributed = _import_distributed()
        timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
        self._distributed = distributed
        self._address = address
        self._retries = retries
        self._function = function or run_task
        self._strip_function = strip_function or run_strip
        self._pending: dict = {}        # key -> future, until its result is here
        self._died_on: set = set()      # keys of tasks whose worker died while running them
        self._subscribed = False
        self._streamed_here = False     # has this process streamed an image yet?
        # Dask logs to stderr (its "distributed" logger's handlers); here that would come
        # between convcli's lines (a lost scheduler, for one, is already each unfinished
        # file's error line).
        self._log_handlers = {handler: handler.level
                              for handler in logging.getLogger("distributed").handlers}
        for handler in self._log_handlers:
            handler.setLevel(logging.CRITICAL + 1)
        self._client = None
        try:
            _probe(address, timeout)
            _handshake(address, timeout)
            self._client = distributed.Client(address, timeout=timeout, set_as_default=False)
            self._check_workers(timeout)
            self._client.subscribe_topic("all", self._on_event)
            self._subscribed = True
        except BaseException:
            self.close()
            raise

    def _on_event(self, event) -> None:
        """The scheduler's events (on the client's thread): a worker that left while running
        tasks may have left their half-written temporaries."""
        message = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            self._died_on.update(message.get("processing-tasks") or ())

    def _check_workers(self, timeout: float) -> None:
        try:
            self._client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise UsageError(f"--scheduler {self._address}: the scheduler has no workers "
                             f"(after {timeout:.0f} s); start some with `dask worker "
                             f"{self._address}`") from None
        from . import __version__

        versions = self._client.run(worker_version, on_error="return")
        for worker, version in sorted(versions.items()):
            if isinstance(version, BaseException):
                why = f"cannot run convcli ({_described(version)})"
            elif version != __version__:
                why = f"has convcli {version}"
            else:
                continue
            raise UsageError(f"--scheduler {self._address}: the worker {worker} {why}; every "
                             f"worker needs convcli {__version__} (pip install "
                             f"'convcli[dask]=={__version__}') and the files at the same paths")

    def _thread_share(self) -> tuple[dict[str, int], int]:
        """({each worker's address: the Dask threads of all workers on its host}, the
        cluster's threads)."""
        workers = self._client.scheduler_info(n_workers=-1)["workers"]
        on_host: dict[str, int] = {}
        for info in workers.values():
            on_host[info["host"]] = on_host.get(info["host"], 0) + info["nthreads"]
        share = {address: on_host[info["host"]] for address, info in workers.items()}
        return share, sum(on_host.values())

    def run(self, tasks: Iterable) -> Iterator[TaskResult]:
        """Results in completion order, one per task (``value`` as ``process_task``'s; a task
        the cluster could not finish has ``died`` saying why)."""
        from .batch import remove_temporaries

        tasks = list(tasks)
        if not tasks:
            return
        sent = [_portable(task) for task in tasks]
        share, threads = self._thread_share()
        groups = group_files([_weight(task) for task, _ in sent], threads)
        run_id = uuid.uuid4().hex[:8]
        members: dict[str, list[int]] = {}

        def submit(batch: list[list[int]], suffix: str = "") -> list:
            keys = [f"convcli-{group[0]}{suffix}-{run_id}" for group in batch]
            futures = self._client.map(run_tasks, [[sent[i][0] for i in group] for group in batch],
                                       share=share, run=self._function, key=keys,
                                       retries=self._retries, pure=False)
            members.update(zip(keys, batch))
            self._pending.update((future.key, future) for future in futures)
            return futures

        completed = self._distributed.as_completed(submit(groups), loop=self._client.loop,
                                                   with_results=True, raise_errors=False)
        for future, result in completed:
            group = members.pop(future.key)
            self._pending.pop(future.key, None)
            finished = future.status == "finished"
            future.release()                      # the workers may forget it now
            if future.key in self._died_on:       # a try on a worker that died left temporaries
                for index in group:
                    remove_temporaries(tasks[index])
            if not finished:                      # erred: (type, error, traceback); cancelled
                error = result[1] if isinstance(result, tuple) else result
                if len(group) > 1 and not self._lost(error):
                    for alone in submit([[index] for index in group], "-alone"):
                        completed.add(alone)      # which of them was it?
                    continue
                for index in group:
                    yield TaskResult(tasks[index], died=self._why_failed(error))
                continue
            for index, (status, value, said) in zip(group, result):
                spelling = sent[index][1]
                if said:
                    sys.stderr.write(_respelled(said, spelling))
                    sys.stderr.flush()
                yield TaskResult(tasks[index], value=(status, _respelled(value, spelling)))

    def streams_here(self, task) -> bool:
        """Is ``task``'s input one image past ``--max-memory`` that streams? This process then
        streams it (``stream_here``), its strips made on the cluster; any other file (one that
        fails to be read too: the same error line) is a task of ``run``. A file that streams
        within --max-memory (``--stream``) streams on one worker, as a task."""
        from .images import read_header
        from .pipeline import _streamed
        from .stream import float_bytes

        options = task.options
        if task.data is not None or task.source.from_stdin or not options.max_memory:
            return False
        try:
            if float_bytes(read_header(task.source.path, gray=options.gray)) \
                    <= options.max_memory:
                return False
            return _streamed(task.source, task.jobs, options, task.data)
        except Exception:
            return False

    def stream_here(self, task) -> tuple[str, object]:
        """``batch.process_task(task)`` in this process with the strips made on the cluster
        (``strips``); its records' engine says so (``... on dask``)."""
        from .batch import _prepare_process, process_task

        if not self._streamed_here:   # as a local run: the same engine paths are chosen here
            _prepare_process(None, True)
            self._streamed_here = True
        status, value = process_task(task, strips_from=self.strips)
        if status == "done":
            for record in value:
                record["engine"] = f"{record['engine']} on dask"
                for layer in record.get("layers") or []:
                    layer["engine"] = f"{layer['engine']} on dask"
        return status, value

    def strips(self, row_filter, reader, strips, timing: dict):
        """``stream.stream_image``'s ``strips_from``: each strip's output rows (C, n, W) in
        order, each made by a task on the cluster (``run_strip``) from the file at the same
        absolute path. ``STRIPS_AHEAD`` tasks per thread of the cluster are out at a time,
        so the strips finished but not yet written, here and on the workers, stay few."""
        from collections import deque
        from itertools import islice

        from .errors import FileFailure

        row_filter.decide_paths()               # here, once: every strip takes the same paths
        share, threads = self._thread_share()
        path = os.path.abspath(reader.path)
        spelling = {path: str(reader.path)} if path != str(reader.path) else {}
        run_id = uuid.uuid4().hex[:8]
        ahead: deque = deque()
        said_before: set[str] = set()

        def submit(strip) -> None:
            key = f"convcli-strip-{strip.out_rows[0]}-{run_id}"
            future = self._client.submit(
                self._strip_function, row_filter, path, reader.gray, int(strip.input_rows[0]),
                *map(int, strip.out_rows), share, key=key, retries=self._retries, pure=False)
            self._pending[key] = future
            ahead.append(future)

        upcoming = iter(strips)
        try:
            for strip in islice(upcoming, max(2, STRIPS_AHEAD * threads)):
                submit(strip)
            while ahead:
                future = ahead.popleft()
                try:
                    status, value, convolve_ms, read_ms, said = future.result()
                except Exception as error:
                    raise FileFailure(f"{reader.path}: {self._why_failed(error)}") from None
                finally:
                    self._pending.pop(future.key, None)
                    future.release()
                for line in said.splitlines(keepends=True):      # once per image
                    if line not in said_before:
                        said_before.add(line)
                        sys.stderr.write(_respelled(line, spelling))
                        sys.stderr.flush()
                if status != "done":
                    raise FileFailure(_respelled(value, spelling))
                timing["convolve"] += convolve_ms
                reader.read_ms += read_ms
                for strip in islice(upcoming, 1):
                    submit(strip)
                yield value
                del value
        finally:
            if ahead:
                for future in ahead:
                    self._pending.pop(future.key, None)
                try:
                    self._client.cancel(list(ahead))
                except Exception:
                    pass
            try:
                self._client.run(forget_readers, path, wait=False)
            except Exception:
                pass

    def _lost(self, error: BaseException) -> bool:
        """Is ``error`` the loss of the scheduler (no use trying again)?"""
        return (any(kind.__name__ == "CancelledError" for kind in type(error).__mro__)
                and (getattr(error, "reason", None) == "scheduler-connection-lost"
                     or self._client.status != "running"))

    def _why_failed(self, error: BaseException) -> str:
        if isinstance(error, self._distributed.KilledWorker):
            tries = getattr(error, "allowed_failures", 0) + 1
            last = getattr(getattr(error, "last_worker", None), "address", None)
            return (f"worker process died, {tries} time(s) on the cluster"
                    + (f" (the last at {last}; see its log)" if last else ""))
        if self._lost(error):
            return f"the connection to the scheduler at {self._address} was lost first"
        if any(kind.__name__ == "CancelledError" for kind in type(error).__mro__):
            return f"the cluster cancelled it ({getattr(error, 'reason', None) or 'no reason'})"
        return f"the cluster could not run it ({_described(error)})"

    def close(self) -> None:
        """Cancel the tasks not finished and disconnect (running ones end with their file)."""
        client = self._client
        if client is None:
            self._restore_logs()
            return
        futures, self._pending = list(self._pending.values()), {}
        steps = [lambda: client.cancel(futures)] if futures else []
        if self._subscribed:       # else the scheduler logs our leaving as a failed event
            steps.append(lambda: client.unsubscribe_topic("all"))
        steps.append(lambda: client.close(timeout=CONNECT_TIMEOUT_S))
        for step in steps:
            try:
                step()
            except Exception:
                pass
        self._restore_logs()

    def _restore_logs(self) -> None:
        for handler, level in self._log_handlers.items():
            handler.setLevel(level)


def group_files(weights: list[int], threads: int) -> list[list[int]]:
    """Indices of the files, in order, in groups of about ``TASK_BYTES`` of ``weights`` (at
    least one file, at most ``MAX_FILES_PER_TASK``), with at least ``TASKS_PER_THREAD``
    groups for each of the cluster's ``threads`` when there are files enough."""
    most = max(1, min(MAX_FILES_PER_TASK, len(weights) // (TASKS_PER_THREAD * max(1, threads))))
    groups: list[list[int]] = []
    total = 0
    for index, weight in enumerate(weights):
        if groups and len(groups[-1]) < most and total + weight <= TASK_BYTES:
            groups[-1].append(index)
            total += weight
        else:
            groups.append([index])
            total = weight
    return groups


def _weight(task) -> int:
    """A file's share of a task: its size in bytes for each output made from it."""
    try:
        size = os.stat(task.source.path).st_size
    except OSError:
        size = 0                  # it fails on the worker, quickly
    return max(1, size) * len(task.jobs)


def _described(error: BaseException) -> str:
    """``Type: first line``, of the error inside a bare ``Exception`` Dask wrapped it in."""
    if type(error) is Exception and error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _probe(address: str, timeout: float) -> None:
    """Open (and close) a TCP connection to the scheduler, for a precise one-line error:
    unknown host, refused, or no answer, each within ``timeout`` (the name's look-up too)."""
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    found: list = []

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM))
        except OSError as error:
            found.append(error)

    looking = threading.Thread(target=look_up, daemon=True)
    looking.start()
    looking.join(timeout)
    if not found:
        raise UsageError(f"--scheduler {address}: the name {host} was not resolved within "
                         f"{timeout:.0f} s")
    if isinstance(found[0], OSError):
        raise UsageError(f"--scheduler {address}: unknown host {host} "
                         f"({found[0].strerror or found[0]})")
    failure = None
    for family, kind, protocol, _, where in found[0]:     # as socket.create_connection
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.settimeout(timeout)
                probe.connect(where)
            return
        except OSError as error:
            failure = error
    if isinstance(failure, (TimeoutError, socket.timeout)):
        raise UsageError(f"--scheduler {address}: no answer within {timeout:.0f} s; is the "
                         "address right and `dask scheduler` running there?")
    raise UsageError(f"--scheduler {address}: cannot connect ({failure.strerror or failure}); "
                     "is `dask scheduler` running there?")


def _handshake(address: str, timeout: float) -> None:
    """Ask the scheduler who it is, within ``timeout`` in all (Dask's own connect waits
    forever on a port that accepts but does not answer, such as the dashboard's)."""
    from distributed.core import rpc
    from distributed.security import Security

    async def identify():
        arguments = Security().get_connection_args("client")    # tls:// from Dask's config
        async with rpc(address, timeout=timeout, connection_args=arguments) as scheduler:
            return await scheduler.identity()

    try:
        answer = asyncio.run(asyncio.wait_for(identify(), timeout))
    except Exception as error:
        timed_out = isinstance(error, (TimeoutError, asyncio.TimeoutError))
        why = (f"no Dask scheduler answered within {timeout:.0f} s" if timed_out
               else f"{type(error).__name__}: {_first_line(error)}")
        raise UsageError(f"--scheduler {address}: not a Dask scheduler ({why}); the "
                         "scheduler's port is the one `dask scheduler` prints (8786 by "
                         "default; 8787 is its dashboard)") from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        kind = answer.get("type") if isinstance(answer, dict) else type(answer).__name__
        raise UsageError(f"--scheduler {address}: that is a Dask {kind}, not a scheduler; give "
                         "the address `dask scheduler` prints")


def _portable(task):
    """(the task with absolute paths, {absolute path: path as given}): the workers may run
    in another folder. Outputs that do not exist yet may be replaced (see the module's
    docstring), unless the task writes files beside them (--split, --save-stages)."""
    from .batch import Task

    spelling: dict[str, str] = {}

    def absolute(path: Path | None) -> Path | None:
        if path is None:
            return None
        full = Path(os.path.abspath(path))
        if str(full) != str(path):
            spelling[str(full)] = str(path)
        return full

    source = replace(task.source, path=absolute(task.source.path))
    jobs = [replace(job, source=source, destination=absolute(job.destination),
                    compare=absolute(job.compare)) for job in task.jobs]
    options = task.options
    made_here = [job.destination for job in jobs] + [job.compare for job in jobs if job.compare]
    if not (options.overwrite or options.split or options.save_stages
            or any(path.exists() for path in made_here)):
        options = replace(options, overwrite=True)
    return Task(source, jobs, options, task.data, task.debug), spelling


def _respelled(value, spelling: dict[str, str]):
    """``value`` (a message, or records) with the absolute paths written as they were given."""
    if not spelling:
        return value
    if isinstance(value, str):
        for full in sorted(spelling, key=len, reverse=True):
            value = value.replace(full, spelling[full])
        return value
    if isinstance(value, list):
        return [_respelled(item, spelling) for item in value]
    if isinstance(value, dict):
        return {key: _respelled(item, spelling) if key in ("input", "output") else item
                for key, item in value.items()}
    return value
