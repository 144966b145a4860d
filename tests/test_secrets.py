"""Secrets stay secret, on live processes: the API token is never written to
a log (serve: a 0600 file in the data directory; run: once to a terminal, a
file otherwise), the watched command does not inherit it, and every data file
runwatch creates (state.db, history.db, spools, the token file) is 0600 in
0700 directories."""
from __future__ import annotations

import os
import pty
import select
import stat
import subprocess
import textwrap

import requests

from support.procs import child_env, runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
import pytest

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()

SECRET = "s3cr3t-token-value-that-must-not-leak"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def post_phase(rw, token, run_id="secret-run"):
    return requests.post(rw.url + "/api/events", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                         json={"run_id": run_id, "type": "phase", "phase": "train"})


def serve_config(tmp_path, log_name="job.log") -> str:
    log = tmp_path / log_name
    log.write_text("Task 1/2: a\n")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        runs:
          - id: job
            file: {log}
            packs: [waa]
        """))
    return str(cfg)


def test_serve_events_writes_a_new_token_to_a_private_file_and_logs_only_its_path(runwatch_proc, tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "RUNWATCH_TOKEN"}
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--events", "--data-dir", str(data), env=env).wait_up()
    token_file = data / "api-token"
    wait_for(lambda: str(token_file) in rw.stderr_text(), 10, what="the token file's path on stderr")
    token = token_file.read_text().strip()
    assert len(token) >= 24
    assert token not in rw.stderr_text()
    assert mode(token_file) == 0o600 and mode(data) == 0o700
    assert post_phase(rw, token).status_code == 200
    assert post_phase(rw, "wrong").status_code == 401


def test_serve_never_logs_a_token_it_was_given(runwatch_proc, tmp_path):
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--events",
                       env=dict(os.environ, RUNWATCH_TOKEN=SECRET)).wait_up()
    assert post_phase(rw, SECRET).status_code == 200
    err = rw.stderr_text()
    assert "API token: from RUNWATCH_TOKEN" in err and SECRET not in err


def test_token_file_flag_and_the_command_line_flag_is_discouraged(runwatch_proc, tmp_path):
    tf = tmp_path / "token"
    tf.write_text(SECRET + "\n")
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--events", "--token-file", str(tf)).wait_up()
    assert post_phase(rw, SECRET).status_code == 200
    assert SECRET not in rw.stderr_text() and f"--token-file {tf}" in rw.stderr_text()
    flag = runwatch_proc("serve", "-c", serve_config(tmp_path, "other.log"), "--events", "--token", SECRET).wait_up()
    err = flag.stderr_text()
    assert SECRET not in err
    assert "showed in ps and /proc/PID/cmdline" in err and "--token-file" in err
    # runwatch moved it out of its command line (same process, re-executed)
    with open(f"/proc/{flag.p.pid}/cmdline", "rb") as f:
        cmdline = f.read()
    assert b"serve" in cmdline and SECRET.encode() not in cmdline and b"--token" not in cmdline
    assert post_phase(flag, SECRET).status_code == 200
    bad = tmp_path / "empty"
    bad.write_text("\n")
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path, "third.log"), "--events", "--token-file", str(bad))
    assert rw.p.wait(30) == 2
    assert f"--token-file {bad}: should hold one token" in rw.stderr_text()


def test_run_without_a_terminal_writes_the_token_to_a_file_not_to_stderr(runwatch_proc, tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "RUNWATCH_TOKEN"}
    rw = runwatch_proc("run", "--grace", "0", "--events", "--data-dir", str(data), "--", "sleep", "300",
                       env=env).wait_up()
    token_file = data / "api-token"
    wait_for(lambda: str(token_file) in rw.stderr_text(), 10, what="the token file's path")
    token = token_file.read_text().strip()
    assert token not in rw.stderr_text() and mode(token_file) == 0o600
    assert post_phase(rw, token, run_id="sleep").status_code == 200
    # `runwatch cancel` takes the same file
    done = subprocess.run(runwatch_cmd("cancel", "sleep", "--url", rw.url, "--token-file", str(token_file)),
                          env={k: v for k, v in child_env().items() if k != "RUNWATCH_TOKEN"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert rw.p.wait(60) == 143          # sleep was asked to stop, and the run ended canceled


def test_a_token_file_that_is_a_fifo_is_refused_without_hanging(runwatch_proc, tmp_path):
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--events", "--token-file", str(fifo))
    assert rw.p.wait(60) == 2
    assert "not a regular file" in rw.stderr_text()


def test_run_on_a_terminal_shows_the_token_once_and_writes_no_file(tmp_path):
    data = tmp_path / "data"
    env = child_env(RUNWATCH_DATA_DIR=str(data))
    env.pop("RUNWATCH_TOKEN", None)
    master, slave = pty.openpty()
    p = subprocess.Popen(runwatch_cmd("run", "--grace", "0", "--listen", "127.0.0.1:0", "--", "true"), env=env,
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    try:
        while True:
            r, _, _ = select.select([master], [], [], 60)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:        # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        p.wait(60)
        os.close(master)
    text = out.decode(errors="replace")
    lines = [ln for ln in text.splitlines() if "API token" in ln]
    assert len(lines) == 1 and "shown once" in lines[0], text
    assert not (data / "api-token").exists()


def test_the_watched_command_does_not_inherit_secrets(runwatch_proc, tmp_path):
    env = dict(os.environ, RUNWATCH_TOKEN=SECRET, RUNWATCH_LOKI_AUTH="user:" + SECRET, RW_MARKER="kept")
    script = 'echo "token=${RUNWATCH_TOKEN:-unset} loki=${RUNWATCH_LOKI_AUTH:-unset} marker=${RW_MARKER:-unset}"'
    rw = runwatch_proc("run", "--grace", "0", "--loki-url", "http://127.0.0.1:9", "--", "sh", "-c", script, env=env)
    assert rw.p.wait(60) == 0
    out = (rw.dir / "stdout").read_text()
    assert "token=unset loki=unset marker=kept" in out, out
    assert SECRET not in out and SECRET not in rw.stderr_text()
    # a --token moved into the environment is not passed on either, and the command's own --token stays
    script = 'echo "token=${RUNWATCH_TOKEN:-unset} args=$*"'
    rw = runwatch_proc("run", "--grace", "0", "--token", SECRET, "--", "sh", "-c", script, "sh", "--token", "mine",
                       env={k: v for k, v in os.environ.items() if k != "RUNWATCH_TOKEN"})
    assert rw.p.wait(60) == 0
    out = (rw.dir / "stdout").read_text()
    assert "token=unset args=--token mine" in out, out


def test_data_files_are_private(runwatch_proc, tmp_path):
    data = tmp_path / "data"
    rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--data-dir", str(data),
                       "--loki-url", "http://127.0.0.1:9", "--loki-flush-timeout", "0").wait_up()
    wait_for(lambda: (data / "state.db").exists() and (data / "history.db").exists(), 30, what="the databases")
    wait_for(lambda: sample(rw.metrics(), "runwatch_lines_total", run_id="job"), 30, what="the line read")
    rw.p.terminate()
    assert rw.p.wait(60) == 0
    files = [p for p in data.rglob("*") if p.is_file()]
    dirs = [data] + [p for p in data.rglob("*") if p.is_dir()]
    assert {p.name for p in files} >= {"state.db", "history.db"}
    assert any(p.suffix == ".seg" for p in files), sorted(map(str, files))     # the Loki spool, at exit
    loose = {str(p): oct(mode(p)) for p in files if mode(p) & 0o077}
    assert not loose, loose
    loose = {str(p): oct(mode(p)) for p in dirs if mode(p) != 0o700}
    assert not loose, loose


def test_a_loki_password_on_the_command_line_leaves_it_and_still_reaches_loki(runwatch_proc, tmp_path):
    import base64

    from support.loki_double import LokiServer
    loki = LokiServer()
    try:
        url = loki.url.replace("http://", f"http://rwuser:{SECRET}@")
        rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--loki-url", url).wait_up()
        with open(f"/proc/{rw.p.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"serve" in cmdline and SECRET.encode() not in cmdline and b"--loki-url" not in cmdline
        wait_for(lambda: loki.lines(), what="the log's line shipped to Loki")
        want = "Basic " + base64.b64encode(f"rwuser:{SECRET}".encode()).decode()
        assert any(h.get("Authorization") == want for h in loki.headers_seen), loki.headers_seen[-1:]
        assert SECRET not in rw.stderr_text()
    finally:
        loki.stop()


def test_a_remote_write_password_on_the_command_line_leaves_it_and_still_reaches_the_receiver(
        runwatch_proc, tmp_path):
    import base64

    from support.remote_write_double import RemoteWriteServer
    rw_server = RemoteWriteServer()
    try:
        url = rw_server.url.replace("http://", f"http://rwuser:{SECRET}@")
        # two receivers (the second one unreachable): both move into the environment together
        rw = runwatch_proc("serve", "-c", serve_config(tmp_path), "--remote-write", url,
                           "--remote-write", "http://127.0.0.1:9/api/v1/write",
                           "--remote-write-interval", "0.2").wait_up()
        with open(f"/proc/{rw.p.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"serve" in cmdline and SECRET.encode() not in cmdline and b"\0--remote-write\0" not in cmdline
        wait_for(lambda: rw_server.latest("runwatch_lines_total", run_id="job"), what="a push with the line")
        want = "Basic " + base64.b64encode(f"rwuser:{SECRET}".encode()).decode()
        assert any(h.get("Authorization") == want for h in rw_server.requests), rw_server.requests[-1:]
        assert SECRET not in rw.stderr_text()
    finally:
        rw_server.stop()
