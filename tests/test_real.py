"""The recorded output of real tools (tests/real/<case>/, see tests/real/record.py): the facts
of each case's truth file, taken from the tool's own result objects, hold in `runwatch scan`
output with every built-in pack and with the packs a user would pick; with every pack, the
output is exactly the golden file beside the log."""
import os
import re
import subprocess

import pytest

from support import real_facts as corpus
from support.procs import runwatch_cmd
from support.prom_text import sample
from support.cli import scan as scan_in_process

CASES = corpus.cases()


def scan(case: str, packs: list[str] | None) -> str:
    args = ["--run-id", case]
    for p in packs or []:
        args += ["--pack", p]
    return scan_in_process(*args, "log", cwd=os.path.join(corpus.HERE, case))


def test_the_corpus_has_every_tool_of_this_part():
    assert {corpus.tool(c) for c in CASES} >= {"python", "tqdm", "pytest", "pip", "uv", "openadapt", "docker",
                                              "hf", "keras", "lightning"}
    for case in CASES:
        d = os.path.join(corpus.HERE, case)
        assert os.path.exists(os.path.join(d, "README")), case
        if corpus.tool(case) == "docker":       # docker cannot run here: composed by compose_docker.py
            assert os.path.exists(os.path.join(corpus.HERE, "compose_docker.py")), case
            continue
        with open(os.path.join(d, "README")) as f:
            shared = re.search(r"\(the driver of ([\w-]+)\)", f.read())   # several cases, one driver
        if shared:
            d = os.path.join(corpus.HERE, shared.group(1))
        assert any(os.path.exists(os.path.join(d, f)) for f in ("run.py", "run.sh")), case


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("packs", ["all", "user"])
def test_truth_facts(case, packs):
    text = scan(case, None if packs == "all" else corpus.user_packs(case))
    wrong = []
    for fact in corpus.facts(case):
        ok, got = corpus.check(text, fact)
        if not ok:
            wrong.append(f"{fact[0]}: {fact[1]}{fact[2] or ''} {fact[3]} {fact[4]}, runwatch shows {got}")
    assert not wrong, "\n".join(wrong)


def test_the_demo_replays_a_corpus_log_byte_for_byte():
    from runwatch.commands.demo import DEMO_DIR
    with open(os.path.join(DEMO_DIR, "logs", "openadapt-api-sequential.log"), "rb") as a, \
            open(os.path.join(corpus.HERE, "openadapt-api-sequential", "log"), "rb") as b:
        assert a.read() == b.read()


def test_every_case_says_how_many_errors_runwatch_must_count():
    # clean runs of every tool must count 0 errors with every pack on (test_truth_facts checks the
    # number): no case may leave it unchecked
    for case in CASES:
        assert any(f[1] == "runwatch_errors_total" for f in corpus.facts(case)), case


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    got = scan(case, None)
    path = os.path.join(corpus.HERE, case, "golden.prom")
    if os.environ.get("RUNWATCH_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(got)
    with open(path) as f:
        assert got == f.read()


def test_scan_without_pack_applies_every_builtin_pack(tmp_path):
    # one line per built-in pack that only that pack reads
    log = tmp_path / "mixed.log"
    log.write_text("Step 1/2 : FROM python\n"                                     # docker
                   "error: No solution found when resolving dependencies\n"      # pip (uv)
                   "test_a.py::test_b FAILED                    [ 50%]\n"        # pytest
                   "Traceback (most recent call last):\n"                        # python
                   "Trial 0 finished with value: 0.5 and parameters: {}. Best is trial 0 with value: 0.5.\n"  # trials
                   "Task 1/3: notepad_1\n")                                      # waa
    p = subprocess.run(runwatch_cmd("scan", str(log)), capture_output=True, text=True, check=True)
    assert sample(p.stdout, "runwatch_docker_build_step") == 1
    assert sample(p.stdout, "runwatch_errors_total") == 2
    assert sample(p.stdout, "runwatch_tasks_failed_total") == 1
    assert sample(p.stdout, "runwatch_best_score", name="value") == 0.5
    assert sample(p.stdout, "runwatch_tasks_started_total") == 1


def test_step_actions_come_from_the_action_vocabulary(tmp_path):
    # openadapt-evals' runner logs several "Step N: ..." lines per step; only the chosen action is one
    log = tmp_path / "steps.log"
    log.write_text("12:00:00 [INFO] Step 0: Getting action from agent\n"
                   "12:00:00 [INFO] Step 0: Agent chose action: click\n"
                   "12:00:00 [INFO] Step 0: Executing action in environment\n"
                   "12:00:01 [INFO] Step 1: Agent chose action: teleport\n"
                   "12:00:01 [INFO] Step 1: Agent signaled task completion\n"
                   "12:00:01 [INFO] Step 2: Done-gate PASSED (score=1.00 >= 1.00)\n"
                   "Step 3: CLICK\n")
    p = subprocess.run(runwatch_cmd("scan", "--pack", "waa", str(log)), capture_output=True, text=True, check=True)
    steps = {k: v for k, v in (ln.split(" ") for ln in p.stdout.splitlines() if ln.startswith("runwatch_steps_total{"))}
    assert steps == {'runwatch_steps_total{action="click",run_id="steps.log"}': "1.0",
                     'runwatch_steps_total{action="other",run_id="steps.log"}': "1.0",
                     'runwatch_steps_total{action="CLICK",run_id="steps.log"}': "1.0"}


def test_a_parallel_summary_line_repeats_a_result_and_counts_once(tmp_path):
    # parallel openadapt-evals runs log "[SUCCESS] Task X completed ..." and then "Task X: SUCCESS";
    # a runner that prints only the second form still counts each task
    log = tmp_path / "par.log"
    log.write_text("INFO:r:[SUCCESS] Task a completed successfully (score: 1.00)\n"
                   "ERROR:r:Task b failed (score: 0.00)\n"
                   "INFO:r:Task a: SUCCESS\n"
                   "INFO:r:Task b: FAIL\n"
                   "INFO:r:Task c: FAIL\n")
    p = subprocess.run(runwatch_cmd("scan", str(log)), capture_output=True, text=True, check=True)
    assert sample(p.stdout, "runwatch_tasks_completed_total") == 3
    assert sample(p.stdout, "runwatch_tasks_failed_total") == 2
    assert sample(p.stdout, "runwatch_errors_total") == 0


def test_docker_lines_as_ci_logs_and_pasted_frames_show_them(tmp_path):
    # a downloaded GitHub Actions log puts an ISO timestamp before each plain line; a final frame
    # of the terminal display pasted from a terminal has no escape codes
    log = tmp_path / "ci.log"
    log.write_text("2026-03-03T23:11:37.3435938Z #5 [builder 2/2] RUN make\n"
                   "2026-03-03T23:11:39.1000000Z #5 DONE 1.8s\n"
                   "2026-03-03T23:11:39.2000000Z #6 [stage-1 1/1] COPY --from=builder /out /app\n"
                   "2026-03-03T23:11:39.3000000Z #6 ERROR: failed to compute cache key\n"
                   "2026-03-03T23:11:39.4000000Z ERROR: failed to solve: failed to compute cache key\n")
    p = subprocess.run(runwatch_cmd("scan", "--pack", "docker", str(log)), capture_output=True, text=True, check=True)
    assert sample(p.stdout, "runwatch_docker_build_steps") == 3
    assert sample(p.stdout, "runwatch_docker_build_steps_done") == 1
    assert sample(p.stdout, "runwatch_errors_total") == 1
    pasted = tmp_path / "pasted.log"
    pasted.write_text("[+] Building 7.2s (9/12)                                                    docker:default\n"
                      " => [internal] load build definition from Dockerfile                          0.0s\n"
                      " => ERROR [builder 3/4] RUN make                                              2.1s\n")
    p = subprocess.run(runwatch_cmd("scan", str(pasted)), capture_output=True, text=True, check=True)
    assert sample(p.stdout, "runwatch_run_progress_ratio") == 0.75
    assert sample(p.stdout, "runwatch_errors_total") == 0     # the vertex line is redrawn, not the error


def test_free_words_beyond_the_label_cap_fold_into_other_and_are_counted(tmp_path):
    from runwatch.model.state import MAX_LABEL_VALUES
    rules = tmp_path / "free.yaml"
    rules.write_text("pack: free\nrules:\n  - name: step\n    match: 'Step (?P<index>\\d+): (?P<action>[a-z]+)'\n"
                     "    emit: step\n")
    log = tmp_path / "steps.log"
    words = [f"act{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(MAX_LABEL_VALUES + 7)]   # letters only
    log.write_text("".join(f"Step {i}: {w}\n" for i, w in enumerate(words)))
    p = subprocess.run(runwatch_cmd("scan", "--rules", str(rules), str(log)), capture_output=True, text=True,
                       check=True)
    assert sample(p.stdout, "runwatch_steps_total", action="other") == 7
    assert sample(p.stdout, "runwatch_label_values_folded_total") == 7
    assert p.stdout.count("runwatch_steps_total{") == MAX_LABEL_VALUES + 1


def test_hostile_lines_do_not_stall_the_new_packs(tmp_path):
    # lines of ~1 MB that made rules backtrack quadratically or worse while they were written
    # (a pytest node id followed by ANSI codes, colons, a "=" frame of ANSI codes): a super-linear
    # rule takes hours on them, a linear one milliseconds; the timeout only catches a hang
    n = 1 << 20
    units = ["\x1b[0m", ":", "::", " ", "\t", "'s ", "1 failed, ", ", score=(train=", "\tv-a:1", "\tv's a: 1",
             " PASSED", "ERROR ", "error", "= "]
    prefixes = ["a::b", "= ", "[1]\t", "[CV] END ", "ERROR ", "Trial 1 failed with parameters: ", ""]
    log = tmp_path / "hostile.log"
    with open(log, "w") as f:
        for pre in prefixes:
            for u in units:
                f.write(pre + u * (n // len(u) // 8) + "\n")
    lines = len(prefixes) * len(units)
    p = subprocess.run(runwatch_cmd("scan", "--max-line-bytes", str(n), str(log)), capture_output=True,
                       text=True, check=True, timeout=600)
    assert sample(p.stdout, "runwatch_lines_total") == lines
