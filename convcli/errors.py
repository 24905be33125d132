"""The one exception family convcli raises for problems a user can cause.

The CLI turns a ``ConvcliError`` into one line on stderr and its ``exit_code``;
nothing else in the package prints or exits.
"""

from __future__ import annotations

__all__ = ["ConvcliError", "UsageError", "FileFailure"]


class ConvcliError(Exception):
    """A problem the user can fix; the message says what was wrong and what is valid."""

    exit_code = 1


class UsageError(ConvcliError, ValueError):
    """A bad option, parameter or kernel spec: nothing was processed (exit code 2)."""

    exit_code = 2


class FileFailure(ConvcliError):
    """One input or output file could not be processed (exit code 1)."""

    exit_code = 1
