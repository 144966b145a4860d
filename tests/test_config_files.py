"""Config files are input from outside too: `runwatch check` (and so `serve`, which loads the
same way) refuses a file too big, an alias bomb, a FIFO, a device or a directory, a lone
surrogate and a url: that is not http(s), quickly and with file:line: reason. Each runs the
real command; the subprocess timeout is only a guard against the hang this prevents."""
from __future__ import annotations

import os
import subprocess

import pytest

from support.procs import runwatch_cmd

from runwatch.yamlfile import MAX_ALIASES, MAX_FILE_BYTES

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()


def check(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(runwatch_cmd("check", *args), capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def d(tmp_path):
    (tmp_path / "job.log").write_text("")
    os.mkfifo(tmp_path / "fifo")                   # nobody ever writes to it: opening it to read would hang
    (tmp_path / "adir").mkdir()
    return tmp_path


def cfg(d, body: str) -> str:
    p = d / "runwatch.yaml"
    p.write_text(body)
    return str(p)


RUN = "runs:\n  - id: r\n    file: job.log\n"


def fails(out, *words):
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    for w in words:
        assert w in out.stderr, (w, out.stderr)
    assert "Traceback" not in out.stderr


def test_an_ordinary_config_with_rules_auth_file_and_url_passes(d):
    (d / "rules.yaml").write_text("pack: mine\nrules:\n  - {name: a, match: 'Epoch (?P<index>\\d+)', emit: step}\n")
    (d / "secret").write_text("user:password\n")
    c = cfg(d, f"loki:\n  url: http://127.0.0.1:3100\n  auth: '@{d / 'secret'}'\n"
               + RUN + "    url: https://ci.example/job/1\n    rules: [rules.yaml]\n")
    out = check("-c", c)
    assert out.returncode == 0, out.stderr
    assert "ok:" in out.stdout


@pytest.mark.parametrize("target,kind", [("fifo", "a FIFO"), ("/dev/zero", "a device"), ("adir", "a directory")])
def test_the_config_itself_must_be_a_regular_file(d, target, kind):
    path = target if target.startswith("/") else str(d / target)
    fails(check("-c", path), f"runwatch: {path}: not a regular file ({kind})")


@pytest.mark.parametrize("target,kind", [("fifo", "a FIFO"), ("/dev/zero", "a device"), ("adir", "a directory")])
def test_rules_entries_must_be_regular_files(d, target, kind):
    c = cfg(d, RUN + f"    rules: [{target}]\n")
    fails(check("-c", c), f"{c}:4: run 'r': rules file {target!r}: not a regular file ({kind})")
    path = target if target.startswith("/") else str(d / target)
    fails(check("--rules", path), f"{path}: not a regular file ({kind})")


@pytest.mark.parametrize("target,kind", [("fifo", "a FIFO"), ("/dev/zero", "a device")])
@pytest.mark.parametrize("section", ["loki", "remote_write"])
def test_auth_at_file_must_be_a_regular_file(d, target, kind, section):
    path = target if target.startswith("/") else str(d / target)
    if section == "loki":
        body = f"loki:\n  url: http://127.0.0.1:3100\n  auth: '@{path}'\n" + RUN
    else:
        body = (f"remote_write:\n  endpoints:\n    - url: http://127.0.0.1:9090/api/v1/write\n"
                f"      auth: '@{path}'\n" + RUN)
    c = cfg(d, body)
    out = check("-c", c)
    line = 3 if section == "loki" else 4      # remote_write: the endpoint's line
    fails(out, f"{c}:{line}:", f"auth file {path!r}: not a regular file ({kind})")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(d):
    c = cfg(d, RUN + "#" * MAX_FILE_BYTES + "\n")
    fails(check("-c", c), f"runwatch: {c}: ", "over the limit of 4 MiB")
    pack = d / "big-pack.yaml"
    pack.write_text("pack: big\nrules:\n  - {name: a, match: 'x', emit: step}\n" + "#" * MAX_FILE_BYTES + "\n")
    fails(check("--rules", str(pack)), f"{pack}: ", "over the limit of 4 MiB")


def test_an_alias_bomb_fails_fast_at_its_line(d):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    body = "\n".join(lines) + "\n" + RUN + "    labels: {bomb: *i}\n"
    c = cfg(d, body)
    fails(check("-c", c), f"{c}:", "aliases expand to more than")


def test_too_many_aliases_fail_at_the_first_one_over(d):
    body = "x: &x 1\nmany: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n" + RUN
    c = cfg(d, body)
    fails(check("-c", c), f"{c}:2: more than {MAX_ALIASES} YAML aliases")


def test_a_recursive_alias_is_refused(d):
    c = cfg(d, "loop: &l [*l]\n" + RUN)
    fails(check("-c", c), f"{c}:1: a recursive YAML alias")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "//evil"])
def test_a_runs_url_is_only_http_or_https(d, url):
    c = cfg(d, RUN + f"    url: '{url}'\n")
    fails(check("-c", c), f"{c}:4: run 'r': url must be an http:// or https:// address")


def test_a_loki_url_is_only_http_or_https(d):
    c = cfg(d, "loki:\n  url: 'javascript:alert(1)'\n" + RUN)
    fails(check("-c", c), f"{c}:2: loki: url must be http(s)")


def test_a_lone_surrogate_in_a_config_string_is_refused_at_its_line(d):
    c = cfg(d, RUN + '    kind: "train\\udcff"\n')
    fails(check("-c", c), f"{c}:4: a lone surrogate U+DCFF")
    c = cfg(d, RUN + '    labels: {team: "\\ud800"}\n')
    fails(check("-c", c), f"{c}:4: a lone surrogate U+D800")


def test_negative_costs_and_budgets_in_a_config_are_errors(d):
    fails(check("-c", cfg(d, RUN + "    cost_per_hour: -1\n")), "cost_per_hour must be at least 0")
    fails(check("-c", cfg(d, RUN + "    budget_usd: -5\n")), "budget_usd must be at least 0")


@pytest.mark.parametrize("flag,value", [("--budget", "-5"), ("--cost-per-hour", "-0.5"), ("--budget", "inf"),
                                        ("--cost-per-hour", "nan")])
def test_negative_or_infinite_costs_on_the_command_line_are_usage_errors(flag, value):
    out = subprocess.run(runwatch_cmd("run", flag, value, "--", "true"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert f"argument {flag}: must be a finite amount, not negative" in out.stderr


def test_deeply_nested_yaml_is_an_error_at_its_line_not_a_recursion_error(d):
    c = cfg(d, RUN + "    labels: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n")
    fails(check("-c", c), f"{c}:4: values nested deeper than 64 levels")
