"""``python -m convcli`` is the same as the ``convcli`` command."""

from .cli import main

main()
