"""`runwatch run` settles everything that can refuse the run before it starts the command,
and a command it cannot watch does not go on running unwatched (commands/run.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from support.ports import free_port
from support.procs import runwatch_cmd
from support.waits import wait_for
from runwatch.cli import build_parser
from runwatch.commands import run as run_cmd

pytestmark = pytest.mark.stack()


def _refused(tmp_path, *opts, env=None):
    """runwatch run OPTS -- a command that leaves a mark: (the process, did the command run?)."""
    mark = tmp_path / "ran"
    argv = runwatch_cmd("run", "--grace", "0", *opts, "--", "sh", "-c", f"touch {mark}")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, **(env or {})))
    return p, mark.exists()


def test_each_refusal_comes_before_the_command_starts(tmp_path):
    bad_pack = tmp_path / "mine.yaml"
    bad_pack.write_text("pack: mine\nrules:\n  - name: r\n    match: '(unclosed'\n    emit: {type: step}\n")
    bad_web = tmp_path / "web.yml"
    bad_web.write_text("tls_server_config:\n  cert_file: /no/such/cert.pem\n  key_file: /no/such/key.pem\n")
    readonly = tmp_path / "ro"
    readonly.write_text("a file, not a directory")    # the token file cannot go under it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ((f"--listen=127.0.0.1:{port}",), "cannot listen on 127.0.0.1:"),
            (("--listen", f"127.0.0.1:{free_port()}", "--rules", str(bad_pack)), "mine.yaml:4"),
            (("--listen", f"127.0.0.1:{free_port()}", "--pack", "wha"), "no built-in pack 'wha'"),
            (("--listen", f"127.0.0.1:{free_port()}", "--redact", "(unclosed"), "redact pattern"),
            (("--listen", f"127.0.0.1:{free_port()}", "--web.config.file", str(bad_web)), "web.yml"),
            (("--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(readonly / "data")),
             "cannot write the API token file"),
            (("--listen", f"127.0.0.1:{free_port()}", "--loki-url", "ftp://loki:3100"), "loki"),
        ]
        for opts, said in cases:
            p, ran = _refused(tmp_path, *opts, env={"RUNWATCH_DATA_DIR": str(tmp_path / "data")})
            assert p.returncode != 0, (opts, p.stderr)
            assert said.lower() in p.stderr.lower(), (opts, p.stderr)
            assert not ran, f"the command ran although runwatch refused: {opts}"
    p, ran = _refused(tmp_path, "--listen", f"127.0.0.1:{free_port()}",
                      env={"RUNWATCH_DATA_DIR": str(tmp_path / "data")})
    assert p.returncode == 0 and ran, p.stderr          # the same command, nothing refused: it runs


def test_a_run_that_cannot_be_watched_stops_its_command(tmp_path, monkeypatch):
    """If loading the parser or the server fails once the command has started, the command is
    stopped (SIGTERM to its group), not left running unwatched, and the error is raised."""
    pidfile = tmp_path / "pid"

    class Broken:
        def __init__(self, *a, **k):
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60,
                     what="the command to start")
            raise RuntimeError("the watch could not be built")

    monkeypatch.setattr(run_cmd, "_Watch", Broken)
    args = build_parser().parse_args(["run", "--grace", "0", "--listen", f"127.0.0.1:{free_port()}",
                                      "--data-dir", str(tmp_path / "data"), "--no-pty", "--",
                                      "sh", "-c", f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; "
                                      "exec sleep 300"])
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="could not be built"):
        run_cmd.cmd_run(args, build_parser())
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):      # stopped and reaped
        os.kill(pid, 0)
    assert threading.active_count() <= before
