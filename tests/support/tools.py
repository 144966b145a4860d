"""The system tools the stack tests run for real, and the Debian package that
installs each (scripts/test installs them on a fresh machine).

A test that needs one says so with its marker, ``@pytest.mark.stack("promtool")``
(a test that needs none but takes long is ``@pytest.mark.stack``); conftest.py
checks the marker's names against TOOLS, and under CI=true fails the session
when a selected test's tool is missing instead of letting the test skip.
"""
from __future__ import annotations

import os
import shutil

import pytest

TOOLS = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
    "chromium": "chromium",
    "victoria-metrics": "victoria-metrics",
    "openssl": "openssl",
}


def binary(name: str) -> str | None:
    """The tool's path on PATH, or None."""
    return shutil.which(name)


def missing(names) -> dict[str, str]:
    """{tool: Debian package} for each of names not on PATH."""
    return {n: TOOLS[n] for n in sorted(set(names)) if binary(n) is None}


def in_ci() -> bool:
    """CI=true (or any value but empty, 0, false, no): every selected test must run."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def stack_tools(item: pytest.Item) -> list[str]:
    """The tools a test's `stack` markers name (none: it only takes long);
    a name not in TOOLS is a usage error, not a silent no-op."""
    names = [n for m in item.iter_markers("stack") for n in m.args]
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.stack names unknown tool(s) {unknown}; "
                                f"known: {sorted(TOOLS)} (tests/support/tools.py)")
    return names
