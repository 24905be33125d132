"""Reading the YAML files users write (kernels, layer stacks), with errors that point at them."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .errors import UsageError

__all__ = ["read_yaml", "parse_yaml"]

# YAML 1.2 floats such as 1e-3 (PyYAML follows YAML 1.1, which reads them as text).
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@functools.lru_cache(maxsize=1)
def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads 1e-3 as a number."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))
    return Loader


def read_yaml(path: Path, what: str):
    """The parsed document of ``path``; any problem is one UsageError starting with the path
    (and the line, for a syntax error). ``what`` names the file's role, e.g. "kernel file"."""
    try:
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
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark is not None and lines else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{where}{line}: invalid YAML ({problem})") from None
