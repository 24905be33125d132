"""Where the compiled loops are cached, whether they are ready, and the background compile.

Free of Numba, so a run can ask "are the compiled loops ready?" for the price of a
``stat``. There is one cache folder per machine, not per environment:
``<root>/convcli-<version>-<engine source hash>-<CPU hash>``, where the root is
``NUMBA_CACHE_DIR`` when set, else the user's cache folder (``~/.cache/convcli`` on Linux),
else a folder in the temporary directory. Every virtualenv with the same convcli engine on
the same CPU shares it, so a reinstall does not start cold; a new version, an edited engine
or another CPU gets a folder of its own, never machine code compiled for something else.

``convcli warmup`` writes ``ready`` into the folder after it compiled (or loaded) every
loop. A run that finds no ``ready`` starts a background compile (detached, at the lowest
priority, one per folder: it holds ``warmup.lock``; it begins when the run ends, or after
``BACKGROUND_DELAY_S``) and filters with NumPy meanwhile; later runs, and the later images
of a long run, use the compiled loops.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock; two background compiles at once are harmless
    fcntl = None

__all__ = ["cache_folder", "loops_ready", "mark_ready", "start_background_warmup",
           "hold_warmup_lock", "background_running", "wait_for_background"]

ENGINE_SOURCES = ("_loops.py", "_pool_loops.py", "_numba_config.py")  # what the machine code depends on
READY, LOCK = "ready", "warmup.lock"
# The background compile starts at the lowest priority, before its imports. It leads a session
# of its own (no terminal signals), and Linux schedules sessions as groups (autogroup), where
# nice alone does not reach across, so the group is niced too. Even so, compiling beside a
# busy run slowed it: the 200-image batch took 5.1-6.2 s against 4.0-4.5 s warm on 2 cores
# (shared caches, hyperthreads). So it waits while the run that started it lives, at most
# BACKGROUND_DELAY_S: a short run never shares its cores, and a long one gets the compiled
# loops from then on.
BACKGROUND_DELAY_S = 10.0
BACKGROUND_WARMUP = ("import os, sys\n"
                     "if hasattr(os, 'nice'):\n"
                     "    os.nice(19)\n"
                     "try:\n"
                     "    with open('/proc/self/autogroup', 'w') as group:\n"
                     "        group.write('19')\n"
                     "except OSError:\n"
                     "    pass\n"
                     "from convcli.engine._cache import run_background_warmup\n"
                     "run_background_warmup(int(sys.argv[1]))\n")


def cache_root() -> Path:
    """``NUMBA_CACHE_DIR``, else the user's cache folder for convcli."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "convcli"


@functools.lru_cache(maxsize=None)
def folder_name() -> str:
    """``convcli-<version>-<engine source hash>-<CPU hash>``."""
    from .. import __version__

    source = hashlib.sha256()
    for name in ENGINE_SOURCES:
        source.update((Path(__file__).parent / name).read_bytes())
    cpu = hashlib.sha256(_cpu_description().encode()).hexdigest()
    return f"convcli-{__version__}-{source.hexdigest()[:12]}-{cpu[:12]}"


def _cpu_description() -> str:
    """The CPU model and its instruction-set flags (Linux), else what ``platform`` knows."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                elif not line.strip() and len(parts) > 2:
                    break                                        # the first CPU is enough
    except OSError:
        pass
    return "\n".join(parts)


@functools.lru_cache(maxsize=None)
def _writable_folder(root: str, name: str) -> Path | None:
    """``root/name``, else the same name in the temporary directory, created and checked
    writable; None when neither can be written (then nothing is cached)."""
    fallback = Path(tempfile.gettempdir()) / f"convcli-cache-{_user_id()}"
    for base in (Path(root), fallback):
        folder = base / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
            return folder
        except OSError:
            continue
    return None


def _user_id() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def cache_folder() -> Path | None:
    """This machine's cache folder for this convcli engine (None: no writable place)."""
    return _writable_folder(str(cache_root()), folder_name())


def loops_ready() -> bool:
    """True when ``convcli warmup`` has filled the cache folder."""
    folder = cache_folder()
    return folder is not None and (folder / READY).exists()


def mark_ready(seconds: dict[str, float]) -> None:
    """Record that every loop is in the cache (written whole, then renamed into place)."""
    folder = cache_folder()
    if folder is None:
        return
    temporary = folder / f".{READY}.{os.getpid()}"
    temporary.write_text("".join(f"{name} {taken:.3f}\n" for name, taken in seconds.items()))
    os.replace(temporary, folder / READY)


def start_background_warmup(on_start=None) -> bool:
    """Start the background compile (``run_background_warmup``) unless the loops are ready or one is running;
    True when the loops will be ready without this process compiling them. ``on_start()``
    is called when this call started it.

    The lock is taken here and handed to the child (a flock belongs to the open file, which
    the child inherits), so two processes asking at once start one compile.
    """
    folder = cache_folder()
    if folder is None:
        return False
    if loops_ready():
        return True
    handle = open(folder / LOCK, "a")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True                                   # another process is compiling
        environment = {**os.environ, "PYTHONSAFEPATH": "1"}   # never import the cwd's modules
        subprocess.Popen([sys.executable, "-c", BACKGROUND_WARMUP, str(os.getpid())],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=environment, start_new_session=True,
                         pass_fds=(handle.fileno(),) if fcntl is not None else ())
    except OSError:
        return False
    finally:
        handle.close()                                        # the child keeps the lock
    if on_start is not None:
        on_start()
    return True


def run_background_warmup(parent: int) -> None:
    """The background compile: wait while ``parent`` runs (at most ``BACKGROUND_DELAY_S``),
    then compile every loop, holding the lock it inherited."""
    from .warmup import warm_up

    deadline = time.monotonic() + BACKGROUND_DELAY_S
    while time.monotonic() < deadline and _alive(parent):
        time.sleep(0.05)
    warm_up(locked=True)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":          # os.kill would end the process there: do not wait
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hold_warmup_lock():
    """Wait for and take the folder's warmup lock, held while the returned file stays open
    (None: no folder). A second compile waits here, then finds the loops cached."""
    folder = cache_folder()
    if folder is None:
        return None
    handle = open(folder / LOCK, "a")
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def background_running(folder: Path | None = None) -> bool:
    """True while a background compile holds the lock of ``folder`` (default: this one)."""
    folder = folder if folder is not None else cache_folder()
    if fcntl is None or folder is None or not (folder / LOCK).exists():
        return False
    with open(folder / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
    return False


def wait_for_background(root: str | os.PathLike | None = None, timeout: float = 300.0) -> bool:
    """Wait until no background compile holds a lock under ``root`` (default: this cache
    root); True if none does within ``timeout`` seconds. For the bench and tests."""
    base = Path(root) if root is not None else cache_root()
    deadline = time.monotonic() + timeout
    while True:
        busy = [lock.parent for lock in base.glob(f"convcli-*/{LOCK}") if background_running(lock.parent)]
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
