"""Reading the YAML files users write (kernels, layer stacks), with errors that point at them."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

__all__ = ["read_yaml"]


def read_yaml(path: Path, what: str):
    """The parsed document of ``path``; any problem is one UsageError starting with the path
    (and the line, for a syntax error). ``what`` names the file's role, e.g. "kernel file"."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read the {what} ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{path}:{where}: invalid YAML ({problem})") from None
