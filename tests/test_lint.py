"""The code passes ruff with the project's own configuration ([tool.ruff] in pyproject.toml)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from support.paths import ROOT


def test_ruff_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff not installed: pip install -e '.[test]' (or pip install ruff)")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"ruff check (exit {r.returncode}):\n{r.stdout}{r.stderr}", pytrace=False)
