"""openadapt-evals' Python API, parallel (EvaluationConfig(parallel=3)): its WAAMockAdapter keeps
one task's state, so each worker thread gets its own (an adapter that says supports_parallel and
hands each call to its thread's WAAMockAdapter); likewise the agent. Some tasks succeed, two fail
(score 0), one raises. Logging with Python's default format (logging.basicConfig(level=INFO):
"LEVEL:logger:message"). The truth comes from the returned BenchmarkResults."""
import collections
import json
import logging
import os
import threading

os.environ["DO_NOT_TRACK"] = "1"                 # openadapt-telemetry sends nothing

from openadapt_evals.adapters import BenchmarkAction, BenchmarkAdapter, WAAMockAdapter
from openadapt_evals.agents import BenchmarkAgent
from openadapt_evals.benchmarks import EvaluationConfig, compute_metrics, evaluate_agent_on_benchmark

logging.basicConfig(level=logging.INFO)

N = 12


class PerThreadMock(BenchmarkAdapter):
    def __init__(self):
        self.local = threading.local()
        self.tasks = WAAMockAdapter(num_tasks=N).list_tasks()

    def _mine(self):
        if not hasattr(self.local, "a"):
            self.local.a = WAAMockAdapter(num_tasks=N)
        return self.local.a

    name = property(lambda self: "waa-mock")
    benchmark_type = property(lambda self: "interactive")
    supports_parallel = property(lambda self: True)

    def list_tasks(self, domain=None):
        return self.tasks

    def load_task(self, task_id):
        return self._mine().load_task(task_id)

    def reset(self, task):
        return self._mine().reset(task)

    def step(self, action):
        return self._mine().step(action)

    def evaluate(self, task):
        return self._mine().evaluate(task)


class PlannedAgent(BenchmarkAgent):
    def __init__(self, plan):
        self.plan, self.local = plan, threading.local()

    def reset(self):
        self.local.n = 0

    def act(self, observation, task, history=None):
        kind = self.plan.get(task.task_id, "ok")
        self.local.n += 1
        n = self.local.n
        if kind == "raise" and n == 3:
            raise ConnectionError("agent server closed the connection")
        script = {"ok": [BenchmarkAction(type="click", target_node_id="4")],
                  "fail": [BenchmarkAction(type="click", target_node_id="3"), BenchmarkAction(type="wait")],
                  "raise": [BenchmarkAction(type="hotkey", key="c", modifiers=["ctrl"]),
                            BenchmarkAction(type="type", text="x")]}[kind]
        return script[n - 1] if n <= len(script) else BenchmarkAction(type="done")


adapter = PerThreadMock()
ids = [t.task_id for t in adapter.list_tasks()]
plan = {ids[1]: "fail", ids[5]: "raise", ids[9]: "fail"}
config = EvaluationConfig(max_steps=10, parallel=3, output_dir="out", run_name="api_par",
                          enable_live_tracking=False, save_execution_traces=False)
results = evaluate_agent_on_benchmark(PlannedAgent(plan), adapter, config=config)
metrics = compute_metrics(results)
actions = collections.Counter(a.type for r in results for _, a in r.steps)
truth = {
    "mode": "parallel",
    "num_tasks": metrics["num_tasks"],
    "success_count": sum(1 for r in results if r.success),
    "failed": sum(1 for r in results if not r.success),
    "error_count": metrics["error_count"],
    "actions": dict(actions),
}
with open("truth.json", "w") as f:
    json.dump(truth, f)
