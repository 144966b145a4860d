"""openadapt-evals' own CLI: a mock evaluation (its WAAMockAdapter and SmartMockAgent, no VM,
no network), 15 tasks. The log is the CLI's output; the truth is what the CLI wrote: its
summary.json (the BenchmarkResults' metrics) and each task's execution.json (the actions chosen)."""
import collections
import glob
import json
import os
import subprocess
import sys

env = dict(os.environ, DO_NOT_TRACK="1")        # openadapt-telemetry sends nothing
cmd = [os.path.join(os.path.dirname(sys.executable), "openadapt-evals"), "mock", "--tasks", "15",
       "--max-steps", "15", "--output", "out", "--run-name", "mock15"]
rc = subprocess.run(cmd, env=env).returncode
with open("out/mock15/summary.json") as f:
    summary = json.load(f)
actions = collections.Counter()
for path in glob.glob("out/mock15/tasks/*/execution.json"):
    with open(path) as f:
        actions.update(s["action"]["type"] for s in json.load(f)["steps"])
tasks = summary["tasks"]
truth = {
    "mode": "sequential",
    "num_tasks": summary["num_tasks"],
    "success_count": summary["success_count"],
    "failed": sum(1 for t in tasks if not t["success"]),
    "error_count": summary["error_count"],
    "actions": dict(actions),
    "cli_exit": rc,
}
with open("truth.json", "w") as f:
    json.dump(truth, f)
sys.exit(rc)
