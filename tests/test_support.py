"""The suite's own rules: helpers come from support/ by import, never through
sys.path or conftest; markers are declared; under CI a missing tool fails the
session instead of skipping the test that needs it."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

from support.paths import REPO, TESTS
from support.tools import TOOLS

MARKED = """
import pytest

@pytest.mark.stack("promtool")
def test_needs_promtool():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A scratch suite run in process with this repo's conftest.py and pytest
    settings (only `pythonpath` made absolute), and no tool on PATH."""
    config = (REPO / "pyproject.toml").read_text()
    assert 'pythonpath = ["tests"]' in config
    pytester.makepyprojecttoml(config.replace('pythonpath = ["tests"]', f"pythonpath = [{TESTS!r}]")
                               .replace('testpaths = ["tests"]', 'testpaths = ["."]'))
    pytester.makeconftest((pathlib.Path(TESTS) / "conftest.py").read_text())
    monkeypatch.setenv("PATH", str(pytester.path / "no-tools-here"))
    monkeypatch.delenv("CI", raising=False)
    return pytester


def run(suite, *args):
    """The scratch suite in process; hypothesis's plugin (seconds to load) is not needed there."""
    return suite.runpytest_inprocess("-p", "no:hypothesispytest", *args)


def test_ci_fails_the_session_when_a_selected_tests_tool_is_missing(suite, monkeypatch):
    suite.makepyfile(test_x=MARKED)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())   # the SDK check is not this test's
    r = run(suite)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*CI: promtool not on PATH*Debian packages prometheus*"])
    r = run(suite, "-m", "not stack")       # the fast loop needs no tool, even in CI
    r.assert_outcomes(passed=1, deselected=1)


def test_without_ci_the_marked_test_runs_and_decides_for_itself(suite):
    suite.makepyfile(test_x=MARKED)
    run(suite).assert_outcomes(passed=2)


def test_unknown_tool_and_unregistered_marker_are_errors(suite):
    suite.makepyfile(test_x="import pytest\n\n@pytest.mark.stack('promtol')\ndef test_a():\n    pass\n")
    r = run(suite)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*stack names unknown tool(s) ?'promtol'?*"])
    suite.makepyfile(test_x="import pytest\n\n@pytest.mark.stak\ndef test_a():\n    pass\n")
    r = run(suite)
    assert r.ret != pytest.ExitCode.OK
    r.stdout.fnmatch_lines(["*'stak' not found in `markers` configuration option*"])


def test_every_tools_package_is_one_scripts_test_installs():
    installs = set(re.findall(r"need\+=\(([\w.+-]+)\)", (REPO / "scripts" / "test").read_text()))
    assert set(TOOLS.values()) <= installs, set(TOOLS.values()) - installs


def python_files():
    for top in ("tests", "bench"):
        yield from sorted((REPO / top).rglob("*.py"))


@pytest.mark.parametrize("path", list(python_files()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_sys_path_edits_and_no_conftest_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            pytest.fail(f"{path.name}:{node.lineno}: touches sys.path (tests: pyproject's pytest pythonpath; "
                        "bench: the installed package)")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("conftest", "tests"):
            pytest.fail(f"{path.name}:{node.lineno}: imports {node.module}; helpers come from support.*")
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("conftest", "tests") for a in node.names):
            pytest.fail(f"{path.name}:{node.lineno}: imports conftest/tests; helpers come from support.*")


def test_tests_point_at_nothing_outside_the_repo():
    # written in two pieces so that this line does not match itself
    outside = re.compile("/" + r"work/|\.\./shared|\bissue \d+|\bissues?/\d+")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in sorted(pathlib.Path(TESTS).rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if outside.search(line)]
    assert not hits, hits
