"""`runwatch check` names every user regex that can only run on the backtracking engine."""
from __future__ import annotations

import textwrap

from support.cli import run_cli

PACK = textwrap.dedent("""\
    pack: mine
    rules:
      - name: linear
        match: 'Epoch (?P<current>\\d+)/(?P<total>\\d+)'
        emit: progress
      - name: with_lookbehind
        match: '(?<!no )(?P<message>fatal: .*)'
        emit: error
""")

CONFIG = textwrap.dedent("""\
    runs:
      - id: job
        file: job.log
        packs: [python]
        rules: [mine.yaml]
    redact:
      - 'employee-\\d+'
      - '(?<=acct=)\\w+'
""")


def test_check_warns_with_file_line_and_rule_and_still_passes(tmp_path):
    (tmp_path / "mine.yaml").write_text(PACK)
    (tmp_path / "job.log").write_text("")
    cfg = tmp_path / "runwatch.yaml"
    cfg.write_text(CONFIG)
    p = run_cli("check", "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok: ")
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2, p.stderr
    assert warnings[0].startswith(f"warning: {tmp_path / 'mine.yaml'}:7: pack 'mine', rule 'with_lookbehind': ")
    assert "backtracking" in warnings[0] and "lookbehind" in warnings[0]
    assert warnings[1].startswith(f"warning: {cfg}:8: redact pattern '(?<=acct=)\\\\w+': ")
    assert "linear" not in p.stderr and "employee" not in p.stderr


def test_check_of_a_linear_pack_has_no_warning(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text(PACK.split("  - name: with_lookbehind")[0])
    p = run_cli("check", "--rules", str(f))
    assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith("ok: ")
