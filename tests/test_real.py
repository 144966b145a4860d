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
        if corpus.tool(case) == "docker":       # docker cannot run here: public transcripts (their README
            with open(os.path.join(d, "README")) as f:          # names where), or composed by compose_docker.py
                readme = f.read()
            if case.startswith("docker-public-"):
                assert re.search(r"^source: https://github\.com/\S+", readme, re.M), case
                assert "lines kept:" in readme and "truth.json" in readme, case
            else:
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


def _errors(tmp_path, text: str, *packs: str) -> float:
    log = tmp_path / "build.log"
    log.write_text(text)
    args = [a for p in packs for a in ("--pack", p)]
    return sample(scan_in_process(*args, str(log)), "runwatch_errors_total")


CLASSIC_FAIL = ("Step 3/4 : RUN pip install -r requirements.txt\n"
                " ---> Running in 0a1b2c3d4e5f\n"
                "ERROR: Could not find a version that satisfies the requirement numpy==9.9.9\n"
                "Traceback (most recent call last):\n"
                "  File \"setup.py\", line 1, in <module>\n"
                "ValueError: no numpy\n"
                "The command '/bin/sh -c pip install -r requirements.txt' returned a non-zero code: 1\n")
PLAIN_FAIL = ("#7 [2/3] RUN make\n"
              "#7 0.512 make: *** [all] Error 2\n"
              "#7 0.513 ERROR: the compiler failed\n"
              "#7 0.514 Traceback (most recent call last):\n"
              "#7 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\n"
              "------\n"
              " > [2/3] RUN make:\n"
              "0.513 ERROR: the compiler failed\n"
              "0.514 Traceback (most recent call last):\n"
              "------\n"
              "Dockerfile:3\n"
              "--------------------\n"
              "   3 | >>> RUN make\n"
              "--------------------\n"
              "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\n")


@pytest.mark.parametrize("packs", [(), ("docker",), ("docker", "python", "pip")])
def test_a_failed_docker_build_is_one_error_whatever_its_steps_print(tmp_path, packs):
    assert _errors(tmp_path, CLASSIC_FAIL, *packs) == 1
    assert _errors(tmp_path, PLAIN_FAIL, *packs) == 1
    # the terminal display: the failed vertex and the step's last lines, redrawn frame after frame
    frames = "".join(f"[+] Building 2.{i}s (5/7)\n => ERROR [2/3] RUN make   0.5s\n"
                     " => => # ERROR: the compiler failed\n" for i in range(3))
    assert _errors(tmp_path, frames + PLAIN_FAIL[PLAIN_FAIL.index("------"):], *packs) == 1


def test_two_failures_in_one_log_are_two_errors(tmp_path):
    after = "Traceback (most recent call last):\n  File \"train.py\", line 1\nRuntimeError: boom\n"
    assert _errors(tmp_path, CLASSIC_FAIL + after) == 2          # the build, then the program it built
    assert _errors(tmp_path, PLAIN_FAIL + after) == 2
    assert _errors(tmp_path, PLAIN_FAIL + PLAIN_FAIL) == 2       # two builds, both failed
    assert _errors(tmp_path, CLASSIC_FAIL + PLAIN_FAIL) == 2
    # errors before a build are not its own
    assert _errors(tmp_path, "ERROR: disk almost full\n" + CLASSIC_FAIL) == 2


def test_error_lines_of_a_build_that_succeeded_are_no_errors(tmp_path):
    # pip's resolver warning comes at ERROR level from a RUN step that succeeds
    ok = ("Step 1/2 : FROM python:3.12\n ---> 1f3b2c0e9a8d\n"
          "Step 2/2 : RUN pip install a\n ---> Running in 0a1b2c3d4e5f\n"
          "ERROR: pip's dependency resolver does not currently take into account all the packages that are installed.\n"
          "Successfully installed a-1.0\n"
          "Removing intermediate container 0a1b2c3d4e5f\n ---> 9e8d7c6b5a4f\n"
          "Successfully built 9e8d7c6b5a4f\n")
    assert _errors(tmp_path, ok) == 0
    plain_ok = ("#5 [2/2] RUN pip install a\n"
                "#5 3.201 ERROR: pip's dependency resolver does not currently take into account all the packages\n"
                "#5 DONE 3.4s\n")
    assert _errors(tmp_path, plain_ok) == 0
    # the step's output ended: what comes after the build counts again
    assert _errors(tmp_path, ok + "ERROR: the service did not start\n") == 1
    assert _errors(tmp_path, plain_ok + "ERROR: the service did not start\n") == 1


def test_docker_before_1_13_and_20_10_print_their_own_forms(tmp_path):
    # "Step 5 : ..." with no total (docker before 1.13); "failed to solve with frontend dockerfile.v0: ..."
    # with no "ERROR:" (docker 20.10), "error: failed to solve: ..." (buildx before 0.10)
    log = tmp_path / "old.log"
    log.write_text("Step 1 : FROM ubuntu:12.10\n ---> b750fe79269d\nStep 2 : RUN make\n ---> Running in 4364147033ee\n"
                   " ---> 530281523792\nSuccessfully built 530281523792\n")
    out = scan_in_process("--pack", "docker", str(log))
    assert sample(out, "runwatch_docker_build_steps") == 2 and sample(out, "runwatch_run_progress_ratio") == 1
    for last in ("failed to solve with frontend dockerfile.v0: failed to create LLB definition: no such file",
                 "error: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2"):
        frame = " => ERROR [internal] load build definition from Dockerfile   0.0s\n"
        assert _errors(tmp_path, frame + last + "\n") == 1


def test_buildkit_pads_step_numbers_to_the_totals_width(tmp_path):
    # dockerfile2llb right-aligns the step number: "[stage-0  1/10]", "[ 2/10]"
    log = tmp_path / "pad.log"
    log.write_text("#4 [stage-0  1/10] FROM ghcr.io/x/y\n#4 DONE 0.0s\n#5 [stage-0  2/10] COPY . .\n#5 CACHED\n"
                   "#6 [ 1/12] FROM docker.io/library/busybox\n")
    out = scan_in_process("--pack", "docker", str(log))
    assert sample(out, "runwatch_docker_build_step") == 3
    assert sample(out, "runwatch_docker_build_steps") == 22      # the stages' totals: stage-0's 10, the unnamed 12
    assert sample(out, "runwatch_docker_build_steps_done") == 2


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


def test_a_line_that_looks_like_docker_s_cannot_hide_later_errors(tmp_path):
    # "#1 ERROR: ..." opens a failure report that "failed to solve" would end; without it, the
    # report holds at most MAX_BUILD_REPORT_ERRORS error lines uncounted, the rest count
    from runwatch.model.state import MAX_BUILD_REPORT_ERRORS
    text = "#1 ERROR: not docker at all\n" + "ERROR: disk full\n" * (MAX_BUILD_REPORT_ERRORS + 7)
    assert _errors(tmp_path, text) == 7
    classic = "Step 2/3 : RUN make\n ---> Running in 0a1b2c3d4e5f\n" + "ERROR: full\n" * (MAX_BUILD_REPORT_ERRORS + 3)
    assert _errors(tmp_path, classic) == 3


def test_a_step_line_alone_opens_no_output(tmp_path):
    # a step's output follows its container's start (" ---> Running in <id>"); a cached step, or
    # docker step lines mixed into other output (bench/make_mixed_log.py), hide no error
    mixed = "".join(f"Step {i}/12 : RUN apt-get install -y pkg{i}\nERROR: worker {i} lost\n" for i in range(1, 6))
    assert _errors(tmp_path, mixed) == 5
    cached = "Step 2/3 : RUN make\n ---> Using cache\n ---> 530281523792\nERROR: disk full\n"
    assert _errors(tmp_path, cached) == 1
