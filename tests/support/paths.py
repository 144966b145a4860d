"""Where things are: every path a test needs, relative to this checkout."""
from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
ROOT = str(REPO)                       # the same, for os.path callers
TESTS = str(REPO / "tests")
EXPORTER = str(REPO / "exporter")      # the package's source root
