"""`runwatch scan`: one-shot output, and the forked parallel path equals one pass."""
import random
import subprocess

import pytest

from support.cli import run_cli
from support.procs import runwatch_cmd
from support.prom_text import sample


def make_log(path, lines: int, seed: int = 1):
    """A mixed log with known counts; long enough to take the parallel path."""
    rng = random.Random(seed)
    truth = {"started": 0, "done": 0, "failed": 0, "errors": 0, "click": 0, "cut": 0, "bad": 0}
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        for i in range(lines):
            r = rng.random()
            if r < 0.01:
                truth["started"] += 1
                f.write(f"2026-11-24 10:00:00,000 INFO runner: Task {truth['started']}/999: t{i}\n")
            elif r < 0.02:
                ok = rng.random() < 0.5
                truth["done"] += 1
                truth["failed"] += not ok
                f.write(f"Task t{i}: {'SUCCESS' if ok else 'FAIL'}\n")
            elif r < 0.05:
                truth["click"] += 1
                f.write("Step 3: CLICK\n")
            elif r < 0.051:
                truth["errors"] += 1
                f.write("ERROR: boom\r\n")
            elif r < 0.052:                 # over --max-line-bytes 300, with a byte that is not UTF-8
                truth["cut"] += 1
                truth["bad"] += 1
                f.write(f"INFO dump \udcff {i}: " + "x" * rng.randint(300, 5000) + "\r\n")
            else:
                f.write(f"INFO trainer: epoch {i} loss={rng.random():.5f} lr=3e-4 throughput=812.5 samples/s\n")
    return truth


@pytest.mark.stack
def test_parallel_scan_equals_a_single_pass(tmp_path):
    log = tmp_path / "big.log"
    truth = make_log(log, 260_000)          # ~22 MB: above the 16 MB parallel threshold
    outs = {}
    for jobs in ("1", "2", "3"):
        p = subprocess.run(runwatch_cmd("scan", "--jobs", jobs, "--max-line-bytes", "300", "--pack", "waa",
                                        "--pack", "python", str(log)),
                           capture_output=True, text=True, check=True)
        outs[jobs] = p.stdout
    assert outs["1"] == outs["2"] == outs["3"]
    t = outs["2"]
    assert sample(t, "runwatch_tasks_started_total") == truth["started"]
    assert sample(t, "runwatch_tasks_completed_total") == truth["done"]
    assert sample(t, "runwatch_tasks_failed_total") == truth["failed"]
    assert sample(t, "runwatch_steps_total", action="CLICK") == truth["click"]
    assert sample(t, "runwatch_errors_total") == truth["errors"]
    assert sample(t, "runwatch_lines_total") == 260_000
    assert sample(t, "runwatch_lines_cut_total") == truth["cut"] > 0
    assert sample(t, "runwatch_line_decode_errors_total") == truth["bad"] > 0


def test_scan_stdin_and_run_id(tmp_path):
    p = subprocess.run(runwatch_cmd("scan", "--pack", "docker", "--run-id", "build-7", "-"),
                       input="Step 2/4 : RUN x\n", capture_output=True, text=True, check=True)
    assert sample(p.stdout, "runwatch_docker_build_step", run_id="build-7") == 2
    assert "timestamp_seconds" not in p.stdout          # wall-clock metrics are left out


@pytest.mark.parametrize("args,msg", [
    (["scan", "x.log"], "no such file"),
    (["scan", "--pack", "waa", "/no/such.log"], "no such file"),
    (["scan", "--pack", "wa", "/dev/null"], 'no built-in pack \'wa\' (did you mean "waa"?)'),
])
def test_scan_errors(args, msg):
    p = run_cli(*args)
    assert p.returncode != 0 and msg in p.stderr


@pytest.mark.stack
def test_parallel_scan_of_a_dense_log_equals_a_single_pass(tmp_path):
    """Nearly every line a step: the workers send their steps compact (events.StepRun's groups)."""
    rng = random.Random(5)
    counts: dict = {}
    log = tmp_path / "dense.log"
    with open(log, "w", encoding="utf-8") as f:
        for i in range(330_000):                     # ~22 MB: above the 16 MB parallel threshold
            if i % 2000 == 0:
                f.write(f"2026-11-24 10:00:00,000 INFO runner: Task {i // 2000 + 1}/999: t{i}\n")
                continue
            a = rng.choice(("CLICK", "TYPE", "WAIT", "DONE", "SCROLL"))
            counts[a] = counts.get(a, 0) + 1
            f.write(f"2026-11-24 10:00:00,001 INFO openadapt_evals.runner: Step {rng.randint(1, 30)}: {a}\n")
    outs = {}
    for jobs in ("1", "2"):
        p = subprocess.run(runwatch_cmd("scan", "--jobs", jobs, "--pack", "waa", "--pack", "docker", str(log)),
                           capture_output=True, text=True, check=True)
        outs[jobs] = p.stdout
    assert outs["1"] == outs["2"]
    for a, n in counts.items():
        assert sample(outs["2"], "runwatch_steps_total", action=a) == n
    assert sample(outs["2"], "runwatch_tasks_started_total") == 165


def test_scan_keeps_no_timeline_but_the_same_state(tmp_path):
    from runwatch.commands.scan import scan
    from runwatch.model.runs import Registry, RunSpec
    from runwatch.parse.packs import Matcher, load_builtin
    log = tmp_path / "a.log"
    data = b"".join(b"Step %d: CLICK\n" % i for i in range(2000)) + b"Task 1/3: x\n"
    log.write_bytes(data)
    m = Matcher([load_builtin("waa")])
    reg = scan([str(log)], m, max_line=4096, jobs=1)
    run = reg.runs["a.log"]
    assert not run.timeline.events and not run.timeline.samples
    ref = Registry()
    r2 = ref.add(RunSpec(id="a.log", kind="log", source="file"))
    ref.ingest(r2, data, _events(m, data), 0, 1.0)
    assert len(r2.timeline.events) == 300
    assert run.state.steps == r2.state.steps == {"CLICK": 2000}
    assert run.state.tasks_started == r2.state.tasks_started == 1


def _events(m, data):
    out: list = []
    m.match_block(data, 1.0, out)
    return out
