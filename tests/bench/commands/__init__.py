"""The benchmark commands, run as ``python -m tests.bench NAME [ARGS]``.

They are Django ``BaseCommand`` classes kept out of ``manage.py``'s list (they are tooling,
not the product): ``command(NAME)`` gives one to ``call_command`` or ``run_from_argv``.
"""

from __future__ import annotations

import importlib

NAMES = (
    "bench_site",
    "bench_ingest",
    "compare_pages",
    "eval_search",
    "load_test",
    "make_corpus",
    "profile_pages",
)


def command(name: str):
    """A new instance of the benchmark command ``name``."""
    if name not in NAMES:
        raise KeyError(f"no benchmark command {name!r}; there are {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").Command()
