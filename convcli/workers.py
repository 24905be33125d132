"""A small process pool that knows which task each worker runs.

``multiprocessing.Pool`` hangs when a worker is killed, and ``ProcessPoolExecutor`` fails
every task in flight without saying which one the dead worker held. Here each worker has
its own pipe and runs one task at a time, so a death fails exactly its own task (the
caller cleans up after it) and a fresh worker takes its place.

Workers start from a fork server (else spawn) that has already imported the pipeline,
so imports and the Numba cache load are paid once per worker, not once per file. Each
worker ignores SIGINT (the parent decides) and turns SIGTERM into ``Terminated`` so
``finally`` blocks, such as the removal of temporary output files, still run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from multiprocessing import forkserver
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator

__all__ = ["WorkerPool", "Terminated", "TaskResult"]


class Terminated(BaseException):
    """Raised in a worker by SIGTERM: stop now, but run the ``finally`` blocks."""


@dataclass
class TaskResult:
    """The outcome of one task: ``value`` if it returned, else ``died`` says how the worker ended."""

    task: Any
    value: Any = None
    died: str | None = None


def _raise_terminated(signum, frame):
    raise Terminated()


def _worker_main(connection, function: Callable, setup: Callable | None, setup_args: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if setup is not None:
            setup(*setup_args)
        while True:
            task = connection.recv()
            if task is None:
                return
            connection.send(function(task))
    except (Terminated, EOFError, BrokenPipeError):
        return


def _context():
    """A fork server that has imported the pipeline (Python 3.11+), else spawn.

    The fork server runs as ``python -c``, which puts the working folder first on its path:
    run from inside another checkout, it would import that checkout's convcli. It starts
    with ``PYTHONSAFEPATH`` (``-P``), so it imports what this process imported; spawn gets
    this process's path from multiprocessing itself (and so does Python 3.10, which has no -P).
    """
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods or sys.version_info < (3, 11):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Not the compiled loops: a worker loads them only once its NumPy work would have paid
    # for that (``engine._runtime``); importing Numba here made README command 1 (four
    # photos, two workers, all NumPy) take 0.74-1.05 s instead of 0.61-0.68 s.
    context.set_forkserver_preload(["convcli.pipeline"])
    previous = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if previous is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = previous
    return context


class _Worker:
    def __init__(self, context, function, setup, setup_args):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, daemon=True,
                                       args=(child, function, setup, setup_args))
        self.process.start()
        child.close()
        self.task = None


class WorkerPool:
    """``processes`` workers that run ``function(task)``; ``setup(*setup_args)`` runs first in each.

    ``function`` and ``setup`` must be importable module-level functions.
    """

    def __init__(self, processes: int, function: Callable, setup: Callable | None = None,
                 setup_args: tuple = ()):
        self._context = _context()
        self._spawn = lambda: _Worker(self._context, function, setup, setup_args)
        self._workers = [self._spawn() for _ in range(processes)]

    def run(self, tasks: Iterable) -> Iterator[TaskResult]:
        """Results in completion order, one per task."""
        pending, busy = deque(tasks), {}
        while pending or busy:
            for worker in self._workers:
                if worker.task is None and pending:
                    worker.task = pending.popleft()
                    worker.connection.send(worker.task)
                    busy[worker.connection] = worker
                    busy[worker.process.sentinel] = worker
            for ready in wait(list(busy)):
                worker = busy.get(ready)
                if worker is None or worker.task is None:
                    continue                      # both its pipe and sentinel were ready
                yield self._collect(worker, busy)

    def _collect(self, worker: _Worker, busy: dict) -> TaskResult:
        task, worker.task = worker.task, None
        del busy[worker.connection], busy[worker.process.sentinel]
        try:
            if worker.connection.poll():
                return TaskResult(task, value=worker.connection.recv())
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._workers[self._workers.index(worker)] = self._spawn()
        return TaskResult(task, died=f"worker process died ({how})")

    def close(self) -> None:
        """Let idle workers finish; stop busy ones with SIGTERM (their cleanup still runs)."""
        for worker in self._workers:
            try:
                if worker.task is None:
                    worker.connection.send(None)
                else:
                    worker.process.terminate()
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.join()
