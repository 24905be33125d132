"""The batch driver: many images through the pipeline, serially or in worker processes.

Every input gets an outcome (done, skipped or failed) in the JSON report and the summary;
a failure never stops the others unless ``fail_fast``; Ctrl-C or SIGTERM stops the
workers, whose temporary files are removed, prints the summary and returns 130.

Default parallelism (``jobs=None``): one process per core when there are at least
``2 x cores`` images, each worker running the engine on ``cores // workers`` threads, so
workers x threads never exceeds the cores; fewer images run in this process with all
cores given to the engine (starting workers costs more than it saves on a handful of files).

With ``scheduler`` (``--scheduler``) the files are tasks on that Dask cluster instead
(``cluster.ClusterPool``, the same shape as ``workers.WorkerPool``); everything else is shared.
"""

from __future__ import annotations

import itertools
import math
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import pipeline
from .engine._runtime import available_cores, settings_restored
from .errors import ConvcliError, UsageError, print_error, print_note, route_warnings
from .images import leftover_temporaries
from .inputs import Source
from .pipeline import ApplyOptions, Job

__all__ = ["BatchSettings", "Task", "run_batch", "available_cores", "default_jobs"]

INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class BatchSettings:
    """How to run the batch (the apply options say what to compute)."""

    jobs: int | None = None
    fail_fast: bool = False
    skip_existing: bool = False
    dry_run: bool = False
    quiet: bool = False
    report: str = "table"
    report_file: Path | None = None
    debug: bool = False
    scheduler: str | None = None    # a Dask scheduler's address (cluster.parse_address's form)

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1; got {self.jobs}")
        if self.jobs is not None and self.scheduler is not None:
            raise UsageError("--jobs sets this machine's worker processes; with --scheduler (or "
                             "$DASK_SCHEDULER_ADDRESS) the cluster's workers run the files: give "
                             "one of them (--scheduler local: this machine's)")


@dataclass
class Task:
    """One input and the outputs to make from it."""

    source: Source
    jobs: list[Job]
    options: ApplyOptions
    data: bytes | None = None  # the image itself, when it comes from standard input
    debug: bool = False


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    planned: int = 0          # inputs in the batch, whatever became of them
    outputs: int = 0
    megapixels: float = 0.0
    records: list[dict] = field(default_factory=list)


def default_jobs(tasks: int, cores: int) -> int:
    """Worker processes for ``tasks`` images (see the module docstring)."""
    return cores if cores > 1 and tasks >= 2 * cores else 1


def process_task(task: Task, strips_from=None) -> tuple[str, object]:
    """Run one task; ("done", records) or ("failed", one-line message). Never raises a user
    error. ``strips_from``: see ``pipeline.apply_to_image``."""
    try:
        records = pipeline.apply_to_image(task.source, task.jobs, task.options, data=task.data,
                                          strips_from=strips_from)
        return "done", [record.as_dict() for record in records]
    except ConvcliError as error:
        return "failed", str(error) + (_trace() if task.debug else "")
    except MemoryError:
        return "failed", f"{task.source.path}: not enough memory to filter this image"
    except Exception as error:  # a bug: report it for this file and let the others go on
        return "failed", (f"{task.source.path}: internal error ({type(error).__name__}: {error}); "
                          "please report it" + (_trace() if task.debug else ""))


def _trace() -> str:
    return "\n" + traceback.format_exc().rstrip()


def _prepare_process(threads: int | None, quiet: bool) -> None:
    """Set up a process that runs tasks (a worker, or this one): its share of the cores
    (None: all of them), the engine's loops compiled in the background on a first run,
    warnings as convcli's own lines, and (unless quiet) a note when compiling starts."""
    from .engine import compile_in_background, on_first_compile, set_threads

    route_warnings()
    compile_in_background(on_start=None if quiet else _announce_background_compile)
    if not quiet:
        on_first_compile(_announce_compiling)
    if threads is not None:
        set_threads(threads)


def _announce_compiling() -> None:
    print_note("compiling the engine's machine code once (Numba; up to 9 s on 2 cores); it is "
               "cached, so later runs start at once")


def _announce_background_compile() -> None:
    print_note("first run on this machine: NumPy filters while the engine's machine code "
               "compiles in the background (about 9 s of one core, at low priority, once this "
               "run ends or after 10 s)")


def run_batch(jobs: list[Job], options: ApplyOptions, settings: BatchSettings, *,
              failed_before: list[str] = (), stdin_data: bytes | None = None) -> int:
    """Produce every job's output; return the exit code (0 all done, 1 failures, 130 stopped).

    ``failed_before`` are one-line messages for inputs that failed while being listed
    (a pattern that matched nothing); they count as failures.
    """
    started = time.perf_counter()
    tasks = _tasks(jobs, options, settings, stdin_data)
    tally = Tally(failed=len(failed_before), planned=len(failed_before) + len(tasks))
    with _report_stream(settings) as report:
        for message in failed_before:
            print_error(message)
        if settings.dry_run:                 # before skipping: it lists existing outputs too
            return _dry_run(tasks, settings)
        if settings.skip_existing:
            tasks = _skip_existing(tasks, tally, report)
        interrupted = _execute(tasks, settings, tally, report)
    _finish(tally, settings, started, interrupted)
    if interrupted:
        return INTERRUPTED_EXIT
    return 1 if tally.failed else 0


def _tasks(jobs: list[Job], options: ApplyOptions, settings: BatchSettings,
           stdin_data: bytes | None) -> list[Task]:
    grouped: dict = {}
    for job in jobs:
        grouped.setdefault(job.source, []).append(job)
    return [Task(source, source_jobs, options, stdin_data if source.from_stdin else None,
                 settings.debug) for source, source_jobs in grouped.items()]


def _skip_existing(tasks: list[Task], tally: Tally, report) -> list[Task]:
    """Drop outputs that exist; an input with none left is skipped."""
    remaining = []
    for task in tasks:
        missing = [job for job in task.jobs if not job.destination.exists()]
        for job in task.jobs:
            if job not in missing:
                _emit(report, _status_record(job, "skipped", "output exists (--skip-existing)"))
        if missing:
            remaining.append(Task(task.source, missing, task.options, task.data, task.debug))
        else:
            tally.skipped += 1
    return remaining


def _dry_run(tasks: list[Task], settings: BatchSettings) -> int:
    """List every output; one that exists says what the run would do with it."""
    existing = 0
    for task in tasks:
        for job in task.jobs:
            exists = not job.to_stdout and job.destination.exists()
            existing += exists
            note = f"; exists: {_fate_of_existing(task.options, settings)}" if exists else ""
            print(f"{task.source.path} -> {job.destination}  ({job.operation.name}{note})",
                  flush=True)
    if not settings.quiet:
        outputs = sum(len(task.jobs) for task in tasks)
        exist = f" ({existing} exist{'s' if existing == 1 else ''})" if existing else ""
        print(f"convcli: dry run: {len(tasks)} input(s), {outputs} output(s){exist}; nothing "
              "written", file=sys.stderr)
    return 0


def _fate_of_existing(options: ApplyOptions, settings: BatchSettings) -> str:
    if settings.skip_existing:
        return "skipped with --skip-existing"
    if options.overwrite:
        return "replaced with --overwrite"
    return "fails without --overwrite or --skip-existing"


def _execute(tasks: list[Task], settings: BatchSettings, tally: Tally, report) -> bool:
    """Run the tasks, recording each outcome; True if stopped by Ctrl-C or SIGTERM."""
    if not tasks:
        return False
    cores = available_cores()
    workers = min(settings.jobs or default_jobs(len(tasks), cores), len(tasks))
    if any(task.data is not None for task in tasks):
        workers = 1
    pool = None
    progress = _Progress(len(tasks), enabled=not settings.quiet and sys.stderr.isatty())
    try:
        with _sigterm_as_interrupt():
            if settings.scheduler is not None:     # connects first: a bad address is exit 2
                from .cluster import ClusterPool

                pool = ClusterPool(settings.scheduler)
            elif workers > 1:
                from .workers import WorkerPool

                pool = WorkerPool(workers, process_task, _prepare_process,
                                  (max(1, cores // workers), settings.quiet))
            with progress, settings_restored():
                if pool is not None:
                    # an image past --max-memory is streamed by this process, its strips
                    # made on the cluster (cluster.py), after the files sent whole
                    here = ([task for task in tasks if pool.streams_here(task)]
                            if settings.scheduler is not None else [])
                    sent = [task for task in tasks if not any(task is t for t in here)]
                    outcomes = itertools.chain(
                        ((r.task, _worker_died(r.task, r.died) if r.died else r.value)
                         for r in pool.run(sent)),
                        ((task, pool.stream_here(task)) for task in here))
                else:
                    _prepare_process(None, settings.quiet)
                    outcomes = ((task, process_task(task)) for task in tasks)
                for task, (status, value) in outcomes:
                    _record(task, status, value, tally, report)
                    progress.advance(task, tally)
                    if status == "failed" and settings.fail_fast:
                        break
    except KeyboardInterrupt:
        return True
    finally:
        if pool is not None:
            pool.close()
    return False


def _record(task: Task, status: str, value, tally: Tally, report) -> None:
    if status == "done":
        tally.done += 1
        for record in value:
            record.update(status="done", error=None)
            tally.outputs += 1
            tally.megapixels += math.prod(record["input_shape"][1:]) / 1e6   # pixels or voxels
            tally.records.append(record)
            _emit(report, record)
        return
    tally.failed += 1
    print_error(value)
    for job in task.jobs:
        _emit(report, _status_record(job, "failed", value.splitlines()[0]))


def _worker_died(task: Task, how: str) -> tuple[str, str]:
    """The outcome of a task whose worker died (or that a cluster could not finish): a killed
    worker cannot clean up, so its half-written temporary files are removed here."""
    remove_temporaries(task)
    return "failed", f"{task.source.path}: {how}"


def remove_temporaries(task: Task) -> None:
    """Remove the temporary files that killed writers of ``task``'s outputs left."""
    for job in task.jobs:
        for leftover in leftover_temporaries(job.destination):
            leftover.unlink(missing_ok=True)


def _status_record(job: Job, status: str, error: str | None) -> dict:
    """A report line for an output that was not made (the same keys as a done one)."""
    record = dict.fromkeys(pipeline.OutputRecord.__dataclass_fields__)
    record.update(input=str(job.source.path), output=str(job.destination), kernel=job.operation.name,
                  status=status, error=error)
    return record


def _emit(report: TextIO | None, record: dict) -> None:
    if report is not None:
        from .report import json_line

        report.write(json_line(record) + "\n")
        report.flush()


@contextmanager
def _report_stream(settings: BatchSettings):
    """Where JSON Lines go: the report file, stdout, or nowhere."""
    if settings.report != "json":
        yield None
    elif settings.report_file is None:
        yield sys.stdout
    else:
        try:
            handle = open(settings.report_file, "w", encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--report-file {settings.report_file}: cannot write "
                             f"({error.strerror or error})") from None
        with handle:
            yield handle


@contextmanager
def _sigterm_as_interrupt():
    """During the batch, SIGTERM stops it like Ctrl-C (summary printed, workers cleaned up)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:            # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(tally: Tally, settings: BatchSettings, started: float, interrupted: bool) -> None:
    """The table (unless quiet: it is for people) and the summary line."""
    if settings.report == "table" and tally.records and not settings.quiet:
        from rich.console import Console

        from .report import records_table

        stream_output = any(r["output"].endswith(":-") for r in tally.records)
        Console(stderr=stream_output).print(records_table(tally.records))
    if settings.quiet or (tally.planned <= 1 and not interrupted):
        return  # one image: its table or error line says it all
    seconds = time.perf_counter() - started
    stopped = "stopped by a signal; " if interrupted else ""
    not_started = tally.planned - tally.done - tally.skipped - tally.failed
    left = f", {not_started} not started" if not_started else ""
    print(f"convcli: {stopped}{tally.done} done, {tally.skipped} skipped, {tally.failed} failed{left}; "
          f"{tally.outputs} output(s) written in {seconds:.2f} s", file=sys.stderr, flush=True)


class _Progress:
    """A rich progress bar on stderr (files, current file, MP/s, ETA), or nothing."""

    def __init__(self, total: int, *, enabled: bool):
        self._bar = None
        self._started = time.perf_counter()
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("convcli"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[current]}"),
                                 console=Console(stderr=True), redirect_stdout=False, transient=True)
            self._task = self._bar.add_task("files", total=total, speed="", current="")

    def __enter__(self):
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False

    def advance(self, task: Task, tally: Tally) -> None:
        if self._bar is None:
            return
        rate = tally.megapixels / max(time.perf_counter() - self._started, 1e-9)
        self._bar.update(self._task, advance=1, speed=f"{rate:.1f} MP/s",
                         current=Path(str(task.source.path)).name)
