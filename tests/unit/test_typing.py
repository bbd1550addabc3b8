"""mypy over pipeline/ and workers/ as pyproject.toml's [tool.mypy] sets it up: a type error
fails the suite (CI runs pytest), listed in the failure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                       reason="mypy is not installed (pip install -e '.[test]' brings it)"),
    pytest.mark.slow,  # about a minute cold on 2 cores, seconds with a warm .mypy_cache
]


def test_mypy_finds_no_errors() -> None:
    # This interpreter's mypy, so it sees the same installed packages and stubs; from the root,
    # so it reads pyproject.toml and keeps its cache in .mypy_cache there.
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"mypy found errors (`make lint` runs it too):\n{done.stdout}{done.stderr}",
                    pytrace=False)
