"""Reading the YAML files users write (kernels, layer stacks), with errors that point at them.

Hostile files are refused, not obeyed: a file larger than ``--max-yaml-bytes`` is not read,
collections shared through anchors and aliases (``&a``/``*a``, the "billion laughs" that
expands to 10^9 items from a few lines) and nesting deeper than ``MAX_DEPTH`` are refused
after the (C, fast) parser has built the document, and numbers beyond Python's int-string
limit are a one-line error, not a traceback.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .errors import UsageError

__all__ = ["read_yaml", "parse_yaml", "DEFAULT_MAX_YAML_BYTES", "MAX_DEPTH"]

# YAML 1.2 floats such as 1e-3 (PyYAML follows YAML 1.1, which reads them as text).
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
# Files above this many bytes are refused unless --max-yaml-bytes allows them: 16 MB holds a
# 1025 x 1025 kernel (the default --max-kernel) written with 10 digits a weight, and parses
# in about 10 s; nothing a person writes by hand comes near it.
DEFAULT_MAX_YAML_BYTES = 16_000_000
# Kernel files nest 5 deep at most (C_out x C_in x kernel), layer files a few more; libyaml
# itself stops at 1000 flow levels, block nesting has no limit there.
MAX_DEPTH = 64


@functools.lru_cache(maxsize=1)
def _loader():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml: ~10x faster than Python's

    class Loader(base):
        """SafeLoader that also reads 1e-3 as a number."""

    # The C loader resolves tags with the same Python resolver class, so this works for both.
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))
    return Loader


def read_yaml(path: Path, what: str, *, max_bytes: int = DEFAULT_MAX_YAML_BYTES):
    """The parsed document of ``path``; any problem is one UsageError starting with the path
    (and the line, for a syntax error). ``what`` names the file's role, e.g. "kernel file";
    a file above ``max_bytes`` (0: no limit) is refused before it is read."""
    try:
        size = Path(path).stat().st_size
        if max_bytes and size > max_bytes:
            raise UsageError(f"{path}: the {what} is {size:,} bytes, more than --max-yaml-bytes "
                             f"{max_bytes:,}; raise it (0: no limit) if the file is meant to be "
                             "that large")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read the {what} ({error})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str, *, lines: bool = True):
    """The parsed YAML ``text``; a syntax error is one UsageError starting with ``where``
    (and the line, unless ``lines`` is false: a one-line value given on the command line)."""
    import yaml

    try:
        document = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark is not None and lines else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{where}{line}: invalid YAML ({problem})") from None
    except ValueError as error:       # an integer beyond Python's int-string limit (4300 digits)
        problem = str(error).splitlines()[0].split(";")[0].lower()
        raise UsageError(f"{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise UsageError(f"{where}: invalid YAML (nested more than {MAX_DEPTH} levels deep)") \
            from None
    _check_shape(document, where)
    return document


def _check_shape(document, where: str) -> None:
    """Refuse a list or mapping reached twice (an alias of a collection: "billion laughs",
    or a document that contains itself) and nesting deeper than ``MAX_DEPTH``. The walk
    visits each collection once, so it costs no more than the parse."""
    seen: set[int] = set()
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, (list, dict)):
            continue
        if id(value) in seen:
            raise UsageError(f"{where}: an alias (*name) repeats a list or mapping; aliases of "
                             "collections are not allowed here: write the values out")
        if depth > MAX_DEPTH:
            raise UsageError(f"{where}: nested more than {MAX_DEPTH} levels deep; a kernel needs "
                             "at most 5 (C_out x C_in x kernel)")
        seen.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items)
