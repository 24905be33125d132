"""The one exception family convcli raises for problems a user can cause.

The CLI turns a ``ConvcliError`` into one line on stderr and its ``exit_code``;
nothing else in the package prints or exits.
"""

from __future__ import annotations

__all__ = ["ConvcliError", "UsageError", "FileFailure", "check_choice"]


class ConvcliError(Exception):
    """A problem the user can fix; the message says what was wrong and what is valid."""

    exit_code = 1


class UsageError(ConvcliError, ValueError):
    """A bad option, parameter or kernel spec: nothing was processed (exit code 2)."""

    exit_code = 2


class FileFailure(ConvcliError):
    """One input or output file could not be processed (exit code 1)."""

    exit_code = 1


def check_choice(name: str, value, valid) -> None:
    """Raise ``UsageError("NAME must be one of a, b, c; got 'x'")`` unless ``value`` is valid."""
    if value not in valid:
        raise UsageError(f"{name} must be one of {', '.join(valid)}; got {value!r}")
