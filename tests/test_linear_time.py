"""Linear time on every line: no rule runwatch ships can be made to backtrack.

A line is text from outside: a watched job's output, a posted event. One line
that makes a regex backtrack quadratically holds the GIL, and /metrics,
/healthz and every other run wait (a 64 KiB line of dots ending in `apikey`
once took minutes). Every pack rule and redaction rule runs on RE2; these tests
hold that, against hostile lines made from each rule's own regex
(tests/support/adversarial.py), timed against a plain line of the same length in the
same process, and against a live `runwatch run`.
"""
from __future__ import annotations

import json
import os
import select
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

TESTS = os.path.dirname(os.path.abspath(__file__))
# A hostile line may cost this many times the reference: the slowest shipped rule
# on a plain 64 KiB line (log text, or a match followed by log text), measured in
# the same child. Per rule the plain line is no reference: an anchored rule rejects
# it after one byte. Quadratic backtracking costs thousands of times the reference.
RATIO = 50


def run_hostile_lines(*args: str) -> tuple[list[tuple[str, str, float]], float, str | None]:
    """Runs tests/support/adversarial.py in a child and watches it. Returns
    ([(rule, what, seconds)], reference seconds, what stalled or None): a match that
    takes 100x the reference so far plus 10 s is a stall; the child is killed."""
    p = subprocess.Popen([sys.executable, os.path.join(TESTS, "support", "adversarial.py"), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results, rule, ref, current, buf = [], None, 0.0, None, ""
    try:
        while True:
            kill_after = 100 * ref + 10 if current else 120
            deadline = time.monotonic() + kill_after
            while "\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                    return results, ref, f"{rule}: {current or 'reference'} (no answer in {kill_after:.0f} s)"
                chunk = os.read(p.stdout.fileno(), 65536).decode()
                if not chunk:
                    raise AssertionError(f"adversarial.py died: {p.wait()} {p.stderr.read()}")
                buf += chunk
            line, buf = buf.split("\n", 1)
            msg = json.loads(line)
            if "rule" in msg:
                rule, ref = msg["rule"], max(ref, msg["ref"])
            elif "start" in msg:
                current = msg["start"]
            elif "done" in msg:
                results.append((rule, msg["done"], msg["seconds"]))
                current = None
            elif msg.get("end"):
                return results, ref, None
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


# The whole check at the line limit takes ~10 s of CPU: the full suite runs it. The fast loop
# runs the same check on 8 KiB lines: a quadratic rule stands out there too (the test below
# flags one on 1.5 KiB lines by a thousandfold).
@pytest.mark.parametrize("limit", [
    pytest.param(8192, id="8KiB"),
    pytest.param(None, id="line-limit", marks=pytest.mark.stack()),
])
def test_every_shipped_rule_is_linear_on_hostile_lines_up_to_the_line_limit(limit):
    results, ref, stalled = run_hostile_lines(*(["--limit", str(limit)] if limit else []))
    assert stalled is None, stalled
    rules = {r for r, *_ in results}
    assert len(rules) > 30 and len(results) > 30 * 20
    slow = [(r, what, f"{s / ref:.0f}x") for r, what, s in results if s > RATIO * ref]
    assert not slow, slow


@pytest.mark.stack()   # takes long: the full suite runs it, the fast loop does not
def test_the_check_catches_a_quadratic_rule():
    """The same harness on the key=value rule as it was (Python re, lookbehind): it must flag it.
    1.5 KiB lines, so the quadratic rule takes a second in all, not minutes (its worst line
    still costs ~1000x the reference, against the 50x allowed)."""
    results, ref, stalled = run_hostile_lines("--backtracking-example", "--limit", "1536")
    slow = [(what, s / ref) for _, what, s in results if s > RATIO * ref]
    assert stalled or slow, results


CHILD = textwrap.dedent("""
    import os, sys, time
    limit = 64 * 1024 - 1
    hostile = [
        "." * (limit - 6) + "apikey",                       # the key=value rule's worst case
        "-" + "a" * (limit - 10) + "password",
        ("wandb login " * 6000)[:limit],
        ("Trial 1 finished with value: 1 and parameters: " * 2000)[:limit],
        ("[BEST]" * 11000)[:limit],
        "1" * (limit - 4) + "%x%|",
    ]
    for h in hostile:
        sys.stdout.write(h + "\\n")
    sys.stdout.write("Task 1/1: after_the_hostile_lines\\n")
    # last: a BEGIN line without END makes the lines after it a private key body
    sys.stdout.write(("-----BEGIN PRIVATE KEY-----" * 2400)[:limit] + "\\n")  # 8 lines in all
    sys.stdout.flush()
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
""")


def test_hostile_lines_do_not_block_metrics_of_a_live_run(tmp_path):
    gate = tmp_path / "gate"
    port = free_port()
    p = subprocess.Popen(runwatch_cmd("run", "--listen", f"127.0.0.1:{port}", "--grace", "0", "--run-id", "hostile",
                                      "--pack", "waa", "--pack", "trials", "--pack", "tqdm", "--pack", "python",
                                      "--", sys.executable, "-c", CHILD, str(gate)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        # Generous: on the quadratic rule this took minutes; linear, it is milliseconds.
        text = wait_for(lambda: (t := requests.get(url + "/metrics", timeout=60).text) and
                        sample(t, "runwatch_lines_total", run_id="hostile") == 8 and t,
                        timeout=120, what="all 8 lines read and matched")
        assert sample(text, "runwatch_tasks_planned", run_id="hostile") is not None     # the line after them too
        assert requests.get(url + "/healthz", timeout=60).ok
    finally:
        gate.touch()
        try:
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
