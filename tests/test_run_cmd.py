"""`runwatch run` end to end: a real child, scraped over loopback while it runs."""
import os
import pty
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from support.ports import free_port
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.waits import wait_for
from runwatch.model.eta import OVERDUE_GROWTH

# live runwatch processes, one or more per test: the full suite runs them, the fast loop does not
pytestmark = pytest.mark.stack()

CHILD = textwrap.dedent("""
    import os, sys, time
    out = sys.stdout
    out.write("Task 1/2: notepad_1\\n"); out.write("Step 1: CLICK\\n")
    out.write("\\x1b[32mTask notepad_1: SUCCESS\\x1b[0m\\n")
    for i in (10, 40, 70):
        out.write(f"{i}%|####      | {i}/100 [00:01<00:02, 30.0it/s]\\r")
    out.flush()
    while not os.path.exists(sys.argv[1]):     # hold until the test has scraped
        time.sleep(0.02)
    out.write("Task 2/2: paint_2\\nERROR something broke\\n"); out.flush()
    sys.exit(3)
""")


def test_run_exports_while_running_passes_output_and_exit_code(tmp_path):
    gate = tmp_path / "gate"
    port = free_port()
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--grace", "30",
                                      "--run-id", "eval-1", "--pack", "waa", "--pack", "tqdm", "--pack", "python",
                                      "--", sys.executable, "-c", CHILD, str(gate)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = wait_for(lambda: (t := requests.get(url, timeout=1).text) and
                        sample(t, "runwatch_tasks_completed_total", run_id="eval-1") == 1 and
                        sample(t, "runwatch_run_progress_ratio", run_id="eval-1") is not None and t,
                        what="first task counted while the child runs")
        assert sample(text, "runwatch_run_state", run_id="eval-1", runwatch_run_state="running") == 1
        assert sample(text, "runwatch_steps_total", run_id="eval-1", action="CLICK") == 1
        assert sample(text, "runwatch_source_up", run_id="eval-1", source="command") == 1
        assert sample(text, "runwatch_tasks_planned", run_id="eval-1") == 2
        gate.touch()
        text = wait_for(lambda: (t := requests.get(url, timeout=1).text) and
                        sample(t, "runwatch_run_state", run_id="eval-1", runwatch_run_state="failed") == 1 and t,
                        what="run failed after exit 3")
        assert sample(text, "runwatch_errors_total", run_id="eval-1") == 1
        assert sample(text, "runwatch_tasks_started_total", run_id="eval-1") == 2
        assert sample(text, "runwatch_run_end_timestamp_seconds", run_id="eval-1") is not None
        assert sample(text, "runwatch_source_up", run_id="eval-1", source="command") == 0
        p.send_signal(signal.SIGINT)                 # Ctrl-C ends the grace period early
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3
    # output passed through byte for byte: colours and \r redraws intact
    assert b"\x1b[32mTask notepad_1: SUCCESS\x1b[0m\n" in out
    assert b"10%|####      | 10/100 [00:01<00:02, 30.0it/s]\r40%" in out
    assert b"exited with code 3; run failed" in err


def test_run_succeeds_with_zero_and_grace_zero_exits_at_once():
    p = subprocess.run(runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--",
                                    sys.executable, "-c", "print('hi')"), capture_output=True, timeout=20)
    assert p.returncode == 0 and p.stdout == b"hi\n"
    assert b"run succeeded" in p.stderr


def test_sigterm_is_forwarded_to_the_child(tmp_path):
    ready = tmp_path / "ready"
    child = textwrap.dedent(f"""
        import signal, sys, time, pathlib
        signal.signal(signal.SIGTERM, lambda s, f: (print("child got SIGTERM", flush=True), sys.exit(7)))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--",
                                      sys.executable, "-c", child), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(ready.exists, what="child ready")
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert b"child got SIGTERM" in out
    assert p.returncode == 7


def test_child_sees_a_terminal_when_runwatch_has_one():
    """With a tty, the child writes to a pty: it keeps its colours (isatty is true)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--",
                                              sys.executable, "-c", "import sys; print('tty', sys.stdout.isatty())"))
    chunks = []
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert b"tty True" in b"".join(chunks)
    assert os.waitstatus_to_exitcode(status) == 0


def test_command_not_found_is_a_clear_error():
    p = subprocess.run(runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0", "--",
                                    "no-such-command-xyz"), capture_output=True, text=True, timeout=20)
    assert p.returncode == 127
    assert "cannot run 'no-such-command-xyz'" in p.stderr


def test_stdin_mode_reads_a_pipe():
    p = subprocess.run(runwatch_cmd("run", "--stdin", "--listen", f"127.0.0.1:{free_port()}", "--grace", "0",
                                    "--pack", "waa"), input=b"Task 1/1: a\nTask a: SUCCESS\n",
                       capture_output=True, timeout=20)
    assert p.returncode == 0 and p.stdout == b"Task 1/1: a\nTask a: SUCCESS\n"


def test_usage_errors():
    p = subprocess.run(runwatch_cmd("run"), capture_output=True, text=True)
    assert p.returncode == 2 and "no command" in p.stderr
    p = subprocess.run(runwatch_cmd("run", "--listen", "nonsense", "--", "true"), capture_output=True, text=True)
    assert p.returncode == 2 and "expected HOST:PORT" in p.stderr


@pytest.mark.stack
def test_a_second_run_of_a_kind_has_an_eta_before_its_first_progress_line(tmp_path):
    """`runwatch run` keeps a history in --data-dir: run 2 is estimated from run 1."""
    first = textwrap.dedent("""
        import time
        for i in range(1, 5):
            print(f"Task {i}/4: t{i}", flush=True); time.sleep(0.3)
            print(f"Task t{i}: SUCCESS", flush=True)
    """)
    common = ["--data-dir", str(tmp_path / "data"), "--kind", "nightly-eval", "--pack", "waa", "--grace", "0"]
    t0 = time.monotonic()
    p = subprocess.run(runwatch_cmd("run", "--listen", f"127.0.0.1:{free_port()}", *common, "--",
                                    sys.executable, "-c", first), capture_output=True, timeout=300)
    first_took = time.monotonic() - t0          # run 1 as runwatch measured it took no longer than this
    assert p.returncode == 0, p.stderr
    gate = tmp_path / "gate"
    second = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    port = free_port()
    t1 = time.monotonic()
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--run-id", "second", *common, "--",
                                      sys.executable, "-c", second), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = wait_for(lambda: (t := requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
                        and sample(t, "runwatch_run_state", run_id="second", runwatch_run_state="running") == 1
                        and t, what="second run running")
        second_age = time.monotonic() - t1
        assert sample(text, "runwatch_run_progress_ratio", run_id="second") is None    # no progress line yet
        eta = sample(text, "runwatch_run_eta_seconds", run_id="second")
        # from run 1's history: at most what run 1 took, plus the growth of a phase that is
        # overdue (OVERDUE_GROWTH per second) however slowly this machine started run 2
        assert eta is not None and 0 < eta <= first_took + OVERDUE_GROWTH * second_age, (eta, first_took, text)
    finally:
        gate.touch()
        p.wait(20)


BYTES_CHILD = textwrap.dedent("""
    import os, random, sys
    rnd = random.Random(5)
    data = rnd.randbytes(3 << 20)          # every byte value: escapes, \\r, invalid UTF-8, NULs
    pos = 0
    while pos < len(data):
        n = rnd.choice((1, 7, 100, 4096, 65536, 300000))
        os.write(1, data[pos:pos + n])
        pos += n
    sys.stderr.write("err line\\n")
""")


def test_the_pass_through_is_byte_for_byte_and_the_last_lines_are_counted(tmp_path):
    """3 MiB of random bytes in writes of every size, then a step line printed just before
    exit: the terminal gets exactly the bytes, the metrics count the last line."""
    out_file = tmp_path / "out.bin"
    child = BYTES_CHILD + "print('\\nTask 1/1: notepad_1\\nStep 1: CLICK', flush=True)\n"
    port = free_port()
    with open(out_file, "wb") as out:
        p = subprocess.Popen(runwatch_cmd("run", "--no-pty", "--listen", f"127.0.0.1:{port}", "--grace", "60",
                                          "--run-id", "bytes", "--pack", "waa", "--", sys.executable, "-c", child),
                             stdout=out, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            text = wait_for(lambda: (t := requests.get(url, timeout=1).text) and
                            sample(t, "runwatch_run_state", run_id="bytes", runwatch_run_state="succeeded") == 1
                            and t, 60, what="the run ends")
            assert sample(text, "runwatch_steps_total", run_id="bytes", action="CLICK") == 1
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    want = subprocess.run([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=True).stdout           # runwatch merges stderr into the output, as a terminal shows it
    assert out_file.read_bytes() == want
