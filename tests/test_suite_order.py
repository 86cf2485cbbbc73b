"""The suite's own order: pytest-xdist must hand tests out in pytest-django's order."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_distribution_by_file_is_refused_saying_why():
    run = _pytest("-n", "2", "--dist", "loadfile", "tests/catalogue/test_paths.py")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "--dist loadfile runs tests out of pytest-django's order" in run.stderr
    assert "Use --dist load" in run.stderr


def test_tests_handed_out_one_at_a_time_run():
    run = _pytest("-n", "2", "--dist", "load", "tests/catalogue/test_paths.py")
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert " passed" in run.stdout
