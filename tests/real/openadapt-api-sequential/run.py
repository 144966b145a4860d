"""openadapt-evals' Python API, sequential: evaluate_agent_on_benchmark on its WAAMockAdapter
with an agent that succeeds on some tasks (clicks Submit like its SmartMockAgent), fails others
(clicks Cancel: score 0, an ordinary failure), raises in one (an erroring task) and returns an
"error" action in one (the agent's own error). Logging as a user script sets it up:
"%(asctime)s - %(name)s - %(levelname)s - %(message)s". The truth comes from the returned
BenchmarkResults and the harness' compute_metrics."""
import collections
import json
import logging
import os

os.environ["DO_NOT_TRACK"] = "1"                 # openadapt-telemetry sends nothing

from openadapt_evals.adapters import BenchmarkAction, WAAMockAdapter
from openadapt_evals.agents import BenchmarkAgent
from openadapt_evals.benchmarks import EvaluationConfig, compute_metrics, evaluate_agent_on_benchmark

logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")


class PlannedAgent(BenchmarkAgent):
    """Per task: "ok" (type, then Submit, done), "fail" (Cancel, done), "raise" (raises at its
    second step), "agent_error" (scrolls, then an error action)."""

    def __init__(self, plan):
        self.plan, self.n = plan, 0

    def reset(self):
        self.n = 0

    def act(self, observation, task, history=None):
        kind, self.n = self.plan.get(task.task_id, "ok"), self.n + 1
        if kind == "ok":
            script = [BenchmarkAction(type="type", text="hello"), BenchmarkAction(type="click", target_node_id="4")]
        elif kind == "fail":
            script = [BenchmarkAction(type="click", target_node_id="3")]
        elif kind == "raise":
            if self.n == 2:
                raise RuntimeError("model endpoint returned HTTP 503")
            script = [BenchmarkAction(type="key", key="Tab")]
        else:
            script = [BenchmarkAction(type="scroll", scroll_direction="down"),
                      BenchmarkAction(type="error", raw_action={"reason": "could not parse the model's answer"})]
        return script[self.n - 1] if self.n <= len(script) else BenchmarkAction(type="done")


adapter = WAAMockAdapter(num_tasks=9)
ids = [t.task_id for t in adapter.list_tasks()]
plan = {ids[2]: "fail", ids[4]: "raise", ids[6]: "fail", ids[7]: "agent_error"}
config = EvaluationConfig(max_steps=10, output_dir="out", run_name="api_seq", enable_live_tracking=False)
results = evaluate_agent_on_benchmark(PlannedAgent(plan), adapter, config=config)
metrics = compute_metrics(results)
actions = collections.Counter(a.type for r in results for _, a in r.steps)
truth = {
    "mode": "sequential",
    "num_tasks": metrics["num_tasks"],
    "success_count": sum(1 for r in results if r.success),
    "failed": sum(1 for r in results if not r.success),
    "error_count": metrics["error_count"],
    "actions": dict(actions),
}
with open("truth.json", "w") as f:
    json.dump(truth, f)
