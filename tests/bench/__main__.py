"""``python -m tests.bench COMMAND [ARGS]``: run a benchmark command with the project's settings.

The command keeps its own options and ``--help``, as under ``manage.py``.
"""

from __future__ import annotations

import os
import sys

PROG = "python -m tests.bench"


def main(argv: list[str]) -> int:
    from tests.bench.commands import NAMES, command

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(f"usage: {PROG} COMMAND [ARGS]  ({PROG} COMMAND --help for its options)")
        print("commands: " + ", ".join(NAMES))
        return 0 if argv else 2
    if argv[0] not in NAMES:
        print(f"{PROG}: unknown command {argv[0]!r}; commands: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalogue.settings")
    import django

    django.setup()
    command(argv[0]).run_from_argv([PROG, *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
