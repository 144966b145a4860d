"""Fixtures and pytest hooks only; the helpers they use live in support/."""
from __future__ import annotations

import importlib.util

import pytest

from support.bytecode import cache_outside_the_checkout
from support.ports import free_port
from support.procs import Proc
from support.tools import in_ci, missing, stack_tools

pytest_plugins = ("pytester",)     # tests/test_support.py runs scratch suites with this conftest

# tests/real/<case>/ holds inputs of recorded tool runs (pytest-*/test_sample.py fails on purpose):
# data for tests/test_real.py, not tests of this project
collect_ignore_glob = ["real/*"]


# Python packages the tests drive for real ('.[test]' installs them).
TEST_MODULES = ("azure.ai.ml", "azure.mgmt.compute", "wandb", "playwright", "ruff")


@pytest.fixture
def runwatch_proc():
    procs = []

    def start(*args, port=None, **kw):
        port = port or free_port()
        args = list(args)
        if "--listen" not in args:      # right after the subcommand, before any "-- CMD"
            args[1:1] = ["--listen", f"127.0.0.1:{port}"]
        pr = Proc(args, port, **kw)
        procs.append(pr)
        return pr

    yield start
    for pr in procs:
        pr.stop()


def pytest_configure(config):
    cache_outside_the_checkout()     # before the test modules are collected and any runwatch process starts


def pytest_sessionstart(session):
    """In CI every test must run: a missing SDK or browser driver is an error, not a skip."""
    if in_ci():
        absent = [m for m in TEST_MODULES if importlib.util.find_spec(m) is None]
        if absent:
            raise pytest.UsageError(f"CI: {', '.join(absent)} not installed; scripts/test installs '.[test]'")


def pytest_collection_finish(session):
    """Every `stack` marker names known tools; in CI, the tools of the selected
    tests must be installed: a missing one fails the session, nothing skips."""
    needed = {n for item in session.items for n in stack_tools(item)}
    if in_ci():
        absent = missing(needed)
        if absent:
            raise pytest.UsageError(
                f"CI: {', '.join(absent)} not on PATH; scripts/test installs the Debian packages "
                f"{' '.join(sorted(set(absent.values())))}")
