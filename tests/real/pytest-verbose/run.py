"""pytest with failures, an error in a fixture, a skip and an xfail; `pytest` as run from
the command line (pytest.main with the same output). Truth: pytest's own statistics (the
terminal reporter's stats, which its summary line is made of) and the collected count."""
import json
import sys

import pytest

ARGS = ["-v"]


class Truth:
    def __init__(self):
        self.stats, self.collected = {}, None

    def pytest_terminal_summary(self, terminalreporter):
        self.stats = {k: len(v) for k, v in terminalreporter.stats.items() if k}

    def pytest_sessionfinish(self, session, exitstatus):
        self.collected, self.exitstatus = session.testscollected, int(exitstatus)


truth = Truth()
code = pytest.main(["-p", "no:cacheprovider", *ARGS, "test_sample.py"], plugins=[truth])
with open("truth.json", "w") as f:
    json.dump({"collected": truth.collected, "stats": truth.stats, "pytest_exit": int(code)}, f)
sys.exit(int(code))
