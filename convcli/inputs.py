"""What ``convcli apply`` was given to read: files, folders, glob patterns, stdin lists.

``expand_inputs`` turns the command line's inputs into an ordered, de-duplicated list of
``Source`` files, each with the sub-folder its outputs go to (``--recursive`` mirrors the
tree under ``-o``). It reads no pixels: a missing or unreadable file fails later, on its own.

Spellings:

* ``photo.png``, ``photos/``, ``'photos/**/*.jpg'``: a file, a folder, a glob pattern.
* ``-``: a list of paths on standard input, one per line (e.g. from ``find``).
* ``png:-`` (any ``FORMAT:-``): one image streamed on standard input, as in ImageMagick.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .errors import UsageError
from .images import IMAGE_SUFFIXES

__all__ = ["Source", "Expansion", "expand_inputs", "STREAM_PATTERN", "is_stream"]

STREAM_PATTERN = re.compile(r"^[A-Za-z0-9]+:-$")  # png:-  jpg:-  tif:-
GLOB_CHARACTERS = re.compile(r"[*?\[]")


def is_stream(spelling: str) -> bool:
    """``png:-`` and friends: an image on stdin (inputs) or stdout (``-o``)."""
    return bool(STREAM_PATTERN.match(spelling))


@dataclass(frozen=True)
class Source:
    """One input file and the sub-folder (relative to ``-o``) its outputs go to."""

    path: Path
    folder: Path = Path(".")
    from_stdin: bool = False
    found: bool = False          # found in a folder or by a pattern, not named on its own


@dataclass
class Expansion:
    """The expanded inputs, plus what was left out and why (for warnings)."""

    sources: list[Source] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)   # patterns that matched no file
    not_images: list[Path] = field(default_factory=list)  # files in folders without an image suffix
    bad_links: list[str] = field(default_factory=list)    # links found in folders: warnings
    failed: list[str] = field(default_factory=list)       # named inputs that cannot be read

    def failures(self) -> list[str]:
        """One line per input that failed while being listed (each counts as a failed file)."""
        return [f"{p}: no files match this pattern" for p in self.unmatched] + self.failed


def expand_inputs(inputs: list[str], *, recursive: bool = False,
                  stdin: TextIO | None = None, exclude: Path | None = None) -> Expansion:
    """Files, folders, glob patterns and ``-`` (paths on stdin) -> Sources, in order, once each.

    ``exclude`` (the ``-o`` folder) is left out of the folders and patterns it lies inside,
    so a run never reads its own outputs (an earlier run's, or this one's) as inputs.
    """
    expansion, seen = Expansion(), set()
    excluded = exclude.resolve() if exclude is not None else None

    def add(source: Source, root: Path | None = None) -> None:
        key = "<stdin>" if source.from_stdin else str(_resolved(source.path))
        if root is not None and excluded is not None and excluded != _resolved(root) \
                and _resolved(root) in excluded.parents and excluded in Path(key).parents:
            return                                  # inside -o, which lies inside the folder
        if key not in seen:
            seen.add(key)
            expansion.sources.append(source)

    streams = [spelling for spelling in inputs if is_stream(spelling)]
    if streams and len(inputs) > 1:
        raise UsageError(f"{streams[0]} streams one image from standard input; give it alone")
    if inputs.count("-") > 1:
        raise UsageError("'-' (paths on standard input) can be given once")
    for spelling in inputs:
        if is_stream(spelling):
            add(Source(Path("<stdin>"), from_stdin=True))
        elif spelling == "-":
            for line in (stdin or sys.stdin).read().splitlines():
                if line.strip():
                    _expand_one(line.strip(), recursive, add, expansion)
        else:
            _expand_one(spelling, recursive, add, expansion)
    return expansion


def _expand_one(spelling: str, recursive: bool, add, expansion: Expansion) -> None:
    path = Path(spelling)
    if path.is_dir():
        _walk_folder(path, recursive, add, expansion)
    elif not path.exists() and not path.is_symlink() and GLOB_CHARACTERS.search(spelling):
        base = _static_prefix(spelling)
        matches = _glob(spelling, base, recursive)
        if not matches:
            expansion.unmatched.append(spelling)
        for match in matches:
            if match.is_dir():
                if recursive:
                    _walk_folder(match, recursive, add, expansion)
            elif not _is_visible(_relative_folder(match, base) / match.name):
                continue
            elif _link_problem(match):
                expansion.bad_links.append(f"{match}: {_link_problem(match)}; skipped")
            else:
                add(Source(match, _relative_folder(match, base) if recursive else Path("."),
                           found=True), base)
    elif _link_problem(path):
        expansion.failed.append(f"{path}: {_link_problem(path)}; there is no image to read")
    else:
        add(Source(path))  # a missing file fails when it is read, with its own message


def _glob(pattern: str, base: Path, recursive: bool) -> list[Path]:
    """The files and folders ``pattern`` matches, sorted. With ``recursive``, ``**`` descends
    into sub-folders but not through symbolic links to folders (as ``--recursive`` walks do):
    ``glob.glob`` follows them, and a link to its own parent made it recurse for ever."""
    if not recursive:
        return sorted(map(Path, glob.glob(pattern)))
    relative = Path(pattern).relative_to(base) if base != Path(".") else Path(pattern)
    return sorted(match for match in base.glob(str(relative))
                  if _is_visible(_relative_folder(match, base) / match.name))


def _walk_folder(folder: Path, recursive: bool, add, expansion: Expansion) -> None:
    """Image and ``.npy`` files in ``folder`` (and below, with ``recursive``), sorted; hidden
    ones skipped."""
    entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    for entry in entries:
        if not _is_visible(entry.relative_to(folder)):
            continue
        if _link_problem(entry):
            expansion.bad_links.append(f"{entry}: {_link_problem(entry)}; skipped")
            continue
        if recursive and entry.is_symlink() and entry.is_dir() and _loops_back(entry):
            expansion.bad_links.append(f"{entry}: a symbolic link to a folder above it (a loop); "
                                       "not followed")
        if not entry.is_file():
            continue
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            add(Source(entry, entry.parent.relative_to(folder) if recursive else Path("."),
                       found=True), folder)
        else:
            expansion.not_images.append(entry)


def _link_problem(path: Path) -> str | None:
    """What is wrong with a symbolic link that leads to no file (a loop, a missing target);
    None for anything else."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop (it leads back to itself)"
    return f"a symbolic link to {os.readlink(path)}, which does not exist"


def _loops_back(link: Path) -> bool:
    """A link to the folder it is in, or to one above it: following it would never end."""
    target, folder = _resolved(link), _resolved(link.parent)
    return target == folder or target in folder.parents


def _resolved(path: Path) -> Path:
    """``path.resolve()``, or the absolute path where a symbolic link loop stops resolving."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):          # RuntimeError: Python < 3.13 on a link loop
        return path.absolute()


def _is_visible(path: Path) -> bool:
    """Dot-files and dot-folders (``.git``, ``.DS_Store``, temporary outputs) are left alone."""
    return not any(part.startswith(".") and part not in (".", "..") for part in path.parts)


def _static_prefix(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard: ``a/b/**/*.png`` -> ``a/b``."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if GLOB_CHARACTERS.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _relative_folder(path: Path, base: Path) -> Path:
    try:
        return path.parent.relative_to(base)
    except ValueError:
        return Path(".")
