"""`runwatch run` and the child's terminal: a pty exactly when runwatch's stdout is one (so a
tool draws what it draws for the user, docker's BuildKit frames included), `--pty` / `--no-pty`
to force either, the user's terminal size (and its changes) passed on. Real children, real
pseudo-terminals (Python's pty module); runwatch is scraped over loopback while the child runs."""
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading

import requests

from support.ports import free_port
from support.procs import child_env, runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
import pytest

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()

# A child that draws like docker: BuildKit's terminal frames when its stderr is a terminal (the
# header, then cursor moves before each redraw), plain "#N" lines when it is not. It reports what
# it saw, then waits for the test's gate file before the last frame.
DOCKERISH = textwrap.dedent("""
    import os, shutil, sys, time
    err = sys.stderr
    tty = err.isatty()
    cols, rows = shutil.get_terminal_size((0, 0))
    print(f"isatty={tty} size={cols}x{rows}", flush=True)
    if tty:
        err.write("\\x1b[1A\\x1b[1B\\x1b[0G\\x1b[?25l[+] Building 0.5s (1/4)" + " " * 40 + "\\n"
                  " => [internal] load build definition from Dockerfile   0.0s\\n\\x1b[?25h")
        err.write("\\x1b[1A\\x1b[1A\\x1b[0G\\x1b[?25l[+] Building 1.0s (2/4)" + " " * 40 + "\\n"
                  "\\x1b[34m => [internal] load build definition from Dockerfile   0.0s\\n\\x1b[0m\\x1b[?25h")
    else:
        err.write("#1 [internal] load build definition from Dockerfile\\n#1 DONE 0.0s\\n")
    err.flush()
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.02)
    if tty:
        err.write("\\x1b[1A\\x1b[1A\\x1b[0G\\x1b[?25l[+] Building 2.0s (4/4) FINISHED" + " " * 31 + "\\n\\x1b[?25h")
    err.flush()
""")


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """runwatch with its stdin, stdout and stderr on a pty we read, as in a user's terminal."""

    def __init__(self, argv: list[str], rows: int = 33, cols: int = 101, **env):
        self.master, slave = os.openpty()
        _set_size(slave, rows, cols)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env=child_env(**env))
        os.close(slave)
        self.chunks: list[bytes] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:          # EIO: every writer closed the pty
                return
            if not data:
                return
            with self.lock:
                self.chunks.append(data)

    def text(self) -> bytes:
        with self.lock:
            return b"".join(self.chunks)

    def finish(self, timeout: float = 60) -> tuple[int, bytes]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(timeout)
        os.close(self.master)
        return code, self.text()


def _progress(url: str, run_id: str):
    try:
        return sample(requests.get(url, timeout=2).text, "runwatch_run_progress_ratio", run_id=run_id)
    except requests.RequestException:
        return None


def test_under_a_terminal_the_child_draws_its_terminal_display_and_runwatch_reads_it(tmp_path):
    gate, port = tmp_path / "gate", free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    term = Terminal(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--grace", "0", "--run-id", "build",
                                 "--", sys.executable, "-c", DOCKERISH, str(gate)))
    try:
        wait_for(lambda: _progress(url, "build") == 0.5, timeout=60, what="the terminal display's header read")
        gate.touch()
        code, out = term.finish()
    finally:
        gate.touch()
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 0
    assert b"isatty=True size=101x33" in out            # the user's terminal, and its size
    assert b"[+] Building 2.0s (4/4) FINISHED" in out     # passed through as drawn


def test_no_pty_gives_the_child_a_pipe_under_a_terminal(tmp_path):
    gate = tmp_path / "gate"
    gate.touch()
    term = Terminal(runwatch_cmd("run", "--no-pty", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0",
                                 "--", sys.executable, "-c", DOCKERISH, str(gate)))
    code, out = term.finish()
    assert code == 0
    assert b"isatty=False" in out and b"#1 DONE 0.0s" in out and b"[+] Building" not in out


def test_pty_gives_the_child_a_terminal_when_runwatch_writes_to_a_pipe(tmp_path):
    gate, port = tmp_path / "gate", free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    p = subprocess.Popen(runwatch_cmd("run", "--pty", "--listen", f"127.0.0.1:{port}", "--grace", "0",
                                      "--run-id", "build", "--", sys.executable, "-c", DOCKERISH, str(gate)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(COLUMNS="120", LINES="40"))
    try:
        wait_for(lambda: _progress(url, "build") == 0.5, timeout=60, what="the terminal display's header read")
        gate.touch()
        out, _ = p.communicate(timeout=60)
    finally:
        gate.touch()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0
    assert b"isatty=True size=120x40" in out            # no terminal to copy: COLUMNS x LINES


def test_pty_and_no_pty_together_are_a_usage_error():
    p = subprocess.run(runwatch_cmd("run", "--pty", "--no-pty", "--", "true"), capture_output=True, text=True)
    assert p.returncode == 2 and "--pty and --no-pty" in p.stderr


def test_the_child_follows_the_terminal_when_it_changes_size(tmp_path):
    said, gate = tmp_path / "said", tmp_path / "gate"
    child = textwrap.dedent(f"""
        import os, pathlib, shutil, signal, time
        got = []
        signal.signal(signal.SIGWINCH, lambda s, f: got.append(shutil.get_terminal_size()))
        pathlib.Path({str(said)!r}).write_text("ready")
        while not got and not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
        size = shutil.get_terminal_size()
        print(f"now {{size.columns}}x{{size.lines}}", flush=True)
    """)
    term = Terminal(runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--",
                                 sys.executable, "-c", child))
    try:
        wait_for(said.exists, timeout=60, what="child ready")
        _set_size(term.master, 50, 132)                  # the user resized the window
        os.killpg(term.proc.pid, signal.SIGWINCH)        # as the terminal does: to its foreground group
        code, out = term.finish()
    finally:
        gate.touch()
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 0
    assert b"now 132x50" in out
