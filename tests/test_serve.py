"""`runwatch serve`, `check` and the HTTP endpoint, with real files and real tools."""
import os
import shutil
import subprocess
import textwrap
import time

import pytest
import requests

from support.cli import run_cli
from support.ports import free_port
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
from runwatch.model.eta import overdue


def write_config(tmp_path, body: str) -> str:
    path = tmp_path / "runwatch.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.fixture
def serve(tmp_path, runwatch_proc):
    def start(body):
        cfg = write_config(tmp_path, body)
        return runwatch_proc("serve", "-c", cfg).wait_up()
    return start


def test_serve_follows_files_and_waits_for_late_ones(tmp_path, serve):
    log = tmp_path / "eval.log"
    log.write_text("Task 1/2: a\nStep 1: CLICK\n")
    rw = serve(f"""
        runs:
          - id: eval
            file: {log}
            packs: [waa]
            kind: agent_eval
            url: https://example.test/run/1
            labels: {{team: vision}}
          - id: later
            file: later.log
            packs: [docker]
    """)
    t = wait_for(lambda: (t := rw.metrics())
                 and sample(t, "runwatch_steps_total", run_id="eval", action="CLICK") == 1 and t,
                 what="first lines counted")
    assert sample(t, "runwatch_run_info", run_id="eval", kind="agent_eval", source="file",
                  url="https://example.test/run/1", team="vision") == 1
    assert sample(t, "runwatch_source_up", run_id="eval", source="file") == 1
    assert sample(t, "runwatch_source_up", run_id="later", source="file") == 0      # not there yet
    assert sample(t, "runwatch_run_state", run_id="later", runwatch_run_state="pending") == 1
    with open(log, "a") as f:
        f.write("Task a: SUCCESS\nTask 2/2: b\npartial li")
    wait_for(lambda: sample(rw.metrics(), "runwatch_tasks_completed_total", run_id="eval") == 1, what="append")
    assert sample(rw.metrics(), "runwatch_lines_total", run_id="eval") == 4          # partial line held
    (tmp_path / "later.log").write_text("Step 2/9 : RUN make\n")
    wait_for(lambda: sample(rw.metrics(), "runwatch_docker_build_step", run_id="later") == 2, what="late file")
    assert sample(rw.metrics(), "runwatch_source_up", run_id="later", source="file") == 1


@pytest.mark.stack
def test_bad_input_is_counted_and_the_exporter_keeps_serving(tmp_path, serve):
    log = tmp_path / "bad.log"
    with open(log, "wb") as f:
        f.write(b"ERROR bad \xff\xfe utf8\n")                 # 2 invalid bytes
        f.write(b"nul\x00inside ERROR\n")
        f.write(b"x" * (50 * 1024 * 1024))                     # a 50 MB line, no newline yet
    rw = serve(f"""
        max_line_bytes: 65536
        runs:
          - {{id: bad, file: {log}, packs: [python]}}
    """)
    wait_for(lambda: sample(rw.metrics(), "runwatch_errors_total", run_id="bad") == 2, timeout=20,
             what="errors counted")
    with open(log, "ab") as f:
        f.write(b" end\nERROR after the long line\n")
        f.write(os.urandom(256 * 1024))                      # binary garbage
        f.write(b"\nERROR still alive\n")
    t = wait_for(lambda: (t := rw.metrics()) and sample(t, "runwatch_errors_total", run_id="bad") >= 4 and t,
                 timeout=20, what="lines after the long line and the garbage")
    assert sample(t, "runwatch_lines_cut_total", run_id="bad") == 1
    assert sample(t, "runwatch_line_decode_errors_total", run_id="bad") >= 2
    assert sample(t, "runwatch_read_lines_cut_total") >= 1
    assert requests.get(rw.url + "/healthz", timeout=10).text == "ok\n"
    rss_kb = int(open(f"/proc/{rw.p.pid}/status").read().split("VmRSS:")[1].split()[0])
    assert rss_kb < 200_000, f"RSS {rss_kb} kB: the 50 MB line was buffered"


@pytest.mark.stack("promtool")
def test_metrics_pass_promtool_and_speak_openmetrics(tmp_path, serve):
    log = tmp_path / "a.log"
    log.write_text("Task 1/3: a\nStep 1: CLICK\nTask a: FAIL\n")
    rw = serve(f"runs:\n  - {{id: a, file: {log}, packs: [waa], cost_per_hour: 2.5, budget_usd: 10}}\n")
    wait_for(lambda: sample(rw.metrics(), "runwatch_tasks_failed_total", run_id="a") == 1, what="lines")
    text = rw.metrics()
    if not shutil.which("promtool"):
        pytest.skip("promtool missing: scripts/test installs the Debian package prometheus")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    r = requests.get(rw.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
    assert "runwatch_run_state{run_id=\"a\",runwatch_run_state=\"running\"} 1" in r.text
    assert sample(text, "runwatch_cost_budget_usd", run_id="a") == 10
    assert sample(text, "runwatch_build_info", version=__import__("runwatch").__version__) == 1
    gz = requests.get(rw.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert gz.headers.get("Content-Encoding") == "gzip" and "runwatch_lines_total" in gz.text


def test_landing_page_and_404(tmp_path, serve):
    log = tmp_path / "a.log"
    log.write_text("")
    rw = serve(f"runs:\n  - {{id: only-run, file: {log}, packs: [waa]}}\n")
    page = requests.get(rw.url + "/", timeout=30)
    assert page.ok and page.headers["Content-Type"].startswith("text/html") and "runwatch" in page.text
    assert requests.get(rw.url + "/nope", timeout=2).status_code == 404


@pytest.mark.parametrize("body,where,reason", [
    ("runs:\n  - id: a\n    file: x.log\n    pakcs: [waa]\n", ":4:",
     "unknown key 'pakcs' in a run (did you mean \"packs\"?)"),
    ("runs:\n  - id: a\n    file: x.log\n    packs: [waa, dokcer]\n", ":4:",
     "no built-in pack 'dokcer' (did you mean \"docker\"?)"),
    ("lisen: 1.2.3.4:1\nruns: []\n", ":1:", "unknown key 'lisen' in the config (did you mean \"listen\"?)"),
    ("runs:\n  - id: a\n  - id: a\n    file: y\n", ":2:", "needs a source"),
    ("runs:\n  - {id: a, file: x}\n  - {id: a, file: y}\n", ":3:", "duplicate run id 'a' (first at line 2)"),
    ("runs:\n  - id: a\n    file: x\n    labels: {run_id: z}\n", ":4:", "label 'run_id' is set by runwatch"),
    ("runs:\n  - id: a\n    file: x\n    rules: [missing.yaml]\n", ":4:", "rules file 'missing.yaml' not found"),
    ("runs:\n  - id: a\n    file: x\n    budget_usd: lots\n", ":4:", "budget_usd must be a number"),
    ("runs:\n  - id: a\n  file: x\n", ":3:", "invalid YAML"),
    ("", ":1:", "the config is empty"),
])
def test_check_names_file_line_and_reason(tmp_path, body, where, reason):
    cfg = write_config(tmp_path, body)
    p = run_cli("check", "-c", cfg)
    assert p.returncode == 1, p.stdout
    assert f"{cfg}{where}" in p.stderr, p.stderr
    assert reason in p.stderr


def test_check_reports_a_broken_regex_in_a_users_pack(tmp_path):
    (tmp_path / "mine.yaml").write_text("rules:\n  - name: epoch\n    match: 'epoch (\\d+'\n    emit: step\n")
    cfg = write_config(tmp_path, "runs:\n  - {id: a, file: x.log, packs: [python], rules: [mine.yaml]}\n")
    p = run_cli("check", "-c", cfg)
    assert p.returncode == 1
    assert "mine.yaml:3: pack 'mine', rule 'epoch': regex does not compile: missing )" in p.stderr
    ok = write_config(tmp_path, "runs:\n  - {id: a, file: x.log, packs: [python, waa]}\n")
    p = run_cli("check", "-c", ok)
    assert p.returncode == 0 and "1 run(s)" in p.stdout


def test_default_listen_is_loopback_and_env_twins_work(tmp_path):
    from runwatch.cli import build_parser
    args = build_parser().parse_args(["run", "--", "true"])
    assert args.listen == ("127.0.0.1", 9897)
    port = free_port()
    log = tmp_path / "e.log"
    log.write_text("Step 3/3 : RUN x\n")
    env = dict(os.environ, RUNWATCH_LISTEN=f"127.0.0.1:{port}", RUNWATCH_PACK="docker")
    p = subprocess.Popen(runwatch_cmd("run", "--grace", "5", "--run-id", "envy", "--", "cat", str(log)), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text, what="env listen")
        wait_for(lambda: sample(requests.get(f"http://127.0.0.1:{port}/metrics").text,
                                "runwatch_docker_build_step", run_id="envy") == 3, what="env pack")
        assert text
    finally:
        p.kill()
        p.wait()


def test_help_teaches_by_example():
    for sub in ("run", "serve", "scan", "demo", "check"):
        p = run_cli(sub, "--help")
        assert p.returncode == 0 and "example" in p.stdout and "runwatch " + sub in p.stdout, sub
    assert run_cli("--version").stdout.startswith("runwatch ")


def test_serve_reads_stdin_as_a_run(tmp_path, runwatch_proc):
    cfg = write_config(tmp_path, "runs:\n  - {id: piped, file: '-', packs: [tqdm]}\n")
    rw = runwatch_proc("serve", "-c", cfg, stdin=subprocess.PIPE).wait_up()
    written = time.monotonic()
    rw.p.stdin.write(b"train:  30%|###       | 30/100 [00:03<00:07, 10.0it/s]\r")
    rw.p.stdin.flush()
    wait_for(lambda: sample(rw.metrics(), "runwatch_run_progress_ratio", run_id="piped") == 0.3, what="stdin line")
    t = rw.metrics()
    assert sample(t, "runwatch_source_up", run_id="piped", source="stdin") == 1
    # tqdm's own 7 s left, counted down since the line (and held above zero once overdue)
    eta = sample(t, "runwatch_run_eta_seconds", run_id="piped")
    assert 0 < eta <= max(7.0, overdue(7.0, time.monotonic() - written)), eta
    rw.p.stdin.close()
    wait_for(lambda: sample(rw.metrics(), "runwatch_source_up", run_id="piped", source="stdin") == 0, what="EOF")
