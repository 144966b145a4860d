"""The system tools the stack tests run for real, and the Debian package that
installs each (scripts/test installs them on a fresh machine).

A test that needs one says so with its marker, ``@pytest.mark.stack("promtool")``
(a test that needs none but takes long is ``@pytest.mark.stack``); conftest.py
checks the marker's names against TOOLS, and under CI=true fails the session
when a selected test's tool is missing instead of letting the test skip.
"""
from __future__ import annotations

import shutil

TOOLS = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
    "chromium": "chromium",
}


def binary(name: str) -> str | None:
    """The tool's path on PATH, or None."""
    return shutil.which(name)


def missing(names) -> dict[str, str]:
    """{tool: Debian package} for each of names not on PATH."""
    return {n: TOOLS[n] for n in sorted(set(names)) if binary(n) is None}
