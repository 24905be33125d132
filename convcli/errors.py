"""The one exception family convcli raises for problems a user can cause.

The CLI turns a ``ConvcliError`` into one line on stderr (``print_error``) and its
``exit_code``; the batch driver prints one such line per failed file. Nothing else in the
package prints or exits.
"""

from __future__ import annotations

import sys

__all__ = ["ConvcliError", "UsageError", "FileFailure", "check_choice", "print_error",
           "print_warning", "print_note", "route_warnings"]


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


def print_error(message: str) -> None:
    """``convcli: error: MESSAGE`` on stderr (one line per problem)."""
    print(f"convcli: error: {message}", file=sys.stderr, flush=True)


def print_warning(message: str) -> None:
    """``convcli: warning: MESSAGE`` on stderr."""
    print(f"convcli: warning: {message}", file=sys.stderr, flush=True)


def print_note(message: str) -> None:
    """``convcli: note: MESSAGE`` on stderr: something worth knowing, not a problem."""
    print(f"convcli: note: {message}", file=sys.stderr, flush=True)


def route_warnings() -> None:
    """Show every Python warning (a library's, or ours) as one ``convcli: warning:`` line, so
    nothing on stderr is a raw Python warning with its file and line number."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print_warning(f"{str(message).splitlines()[0] if str(message) else category.__name__}")

    warnings.showwarning = show
