"""Task functions for test_cluster.py that the Dask workers import (this folder is on their
path: LocalCluster's worker processes start with the test process's ``sys.path``)."""

from __future__ import annotations

import os
import signal

from convcli.cluster import run_task


def die_first(task, share):
    """``cluster.run_task``, except that an input named ``die-once*`` kills its worker process
    on the first try and ``die-always*`` on every try, after leaving a half-written temporary
    file beside its output (as a writer killed mid-file does). A marker file beside the input
    says that the first try happened."""
    name = task.source.path.name
    if name.startswith(("die-once", "die-always")):
        marker = task.source.path.with_name(name + ".tried")
        if name.startswith("die-always") or not marker.exists():
            marker.touch()
            for job in task.jobs:
                job.destination.parent.mkdir(parents=True, exist_ok=True)
                (job.destination.parent / f".{job.destination.name}.tmp-killed").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task, share)


def strip_fails(row_filter, path, gray, low, first, stop, share):
    """``cluster.run_strip``, except that each strip of an input named ``fail-once*`` raises
    on its first try (a marker file beside the input per strip says it did), every strip
    of one named ``fail-always*`` raises on every try, and the first strip of one named
    ``die-once*`` kills its worker process on its first try."""
    from pathlib import Path

    from convcli.cluster import run_strip

    name = Path(path).name
    if name.startswith("die-once") and first == 0:
        marker = Path(path).with_name(f"{name}.died")
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("fail-always"):
        raise OSError(f"strip {first}-{stop} failed on purpose")
    if name.startswith("fail-once"):
        marker = Path(path).with_name(f"{name}.{first}.tried")
        if not marker.exists():
            marker.touch()
            raise OSError(f"strip {first}-{stop} failed once on purpose")
    return run_strip(row_filter, path, gray, low, first, stop, share)
