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

CASES = corpus.cases()


def scan(case: str, packs: list[str] | None) -> str:
    args = ["scan", "--run-id", case]
    for p in packs or []:
        args += ["--pack", p]
    p = subprocess.run(runwatch_cmd(*args, "log"), capture_output=True, text=True,
                       cwd=os.path.join(corpus.HERE, case), check=True)
    return p.stdout


def test_the_corpus_has_every_tool_of_this_part():
    assert {corpus.tool(c) for c in CASES} >= {"python", "tqdm", "pytest", "pip", "uv", "hf", "keras", "lightning"}
    for case in CASES:
        d = os.path.join(corpus.HERE, case)
        assert os.path.exists(os.path.join(d, "README")), case
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


def test_free_words_in_step_lines_fold_into_other_and_are_counted(tmp_path):
    from runwatch.model.state import MAX_LABEL_VALUES
    log = tmp_path / "steps.log"
    words = [f"act{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(MAX_LABEL_VALUES + 7)]   # letters only
    log.write_text("".join(f"Step {i}: {w}\n" for i, w in enumerate(words)))
    p = subprocess.run(runwatch_cmd("scan", "--pack", "waa", str(log)), capture_output=True, text=True, check=True)
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
