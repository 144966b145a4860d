"""The Prometheus collector: metric families built from a snapshot per scrape.

This is the exporter guidelines' way: nothing is stored in prometheus_client
metric objects, so a run that is forgotten leaves no stale series, and two
concurrent scrapes each see one consistent snapshot. The metric contract is in
DESIGN.md and README.md.
"""
from __future__ import annotations

import time

from .families import Collector, CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily

from .. import __version__
from ..events import AGENT_STATES, RUN_STATES, VM_POWER_STATES
from ..model.runs import Registry

RID = ["run_id"]


class RunwatchCollector(Collector):
    def __init__(self, registry: Registry, *, wall_clock: bool = True, self_metrics: bool = True,
                 extra=None):
        """wall_clock=False leaves out metrics that depend on when they are read
        (timestamps, ETA, cost): `runwatch scan` prints what a log contains."""
        self.registry = registry
        self.wall_clock = wall_clock
        self.self_metrics = self_metrics
        self.extra = extra or []        # more collect() callables (Loki shipper health, …)
        self.last_duration = 0.0

    def describe(self):
        return []    # unchecked collector: families depend on the runs

    def collect(self):
        t0 = time.perf_counter()
        now = time.time()
        snaps = self.registry.snapshot(now)
        yield from self._runs(snaps, now)
        if self.self_metrics:
            yield from self._self(snaps)
        for extra in self.extra:
            yield from extra()
        self.last_duration = time.perf_counter() - t0

    # ------------------------------------------------------------ per run

    def _runs(self, snaps, now):
        info = InfoMetricFamily("runwatch_run", "What a run is: kind, source, url and configured labels.")
        state = StateSetMetricFamily("runwatch_run_state", "Run state (pending, running, succeeded, failed, canceled).",
                                     labels=RID)
        phase = InfoMetricFamily("runwatch_run_phase", "The run's current phase.", labels=RID)

        def g(name, doc, labels=RID):
            return GaugeMetricFamily(name, doc, labels=labels)

        def c(name, doc, labels=RID):
            return CounterMetricFamily(name, doc, labels=labels)

        progress = g("runwatch_run_progress_ratio", "Fraction of the run done, 0 to 1.")
        planned = g("runwatch_tasks_planned", "Tasks the run will do (10 from 'Task 1/10').")
        started = c("runwatch_tasks_started", "Tasks started.")
        completed = c("runwatch_tasks_completed", "Tasks finished, whatever the result.")
        failed = c("runwatch_tasks_failed", "Tasks that finished as failures.")
        steps = c("runwatch_steps", "Agent steps by action.", RID + ["action"])
        bstep = g("runwatch_docker_build_step",
                  "Current docker build step (5 of 'Step 5/12'; BuildKit: distinct steps started).")
        bsteps = g("runwatch_docker_build_steps",
                   "Total docker build steps (12 of 'Step 5/12'; BuildKit: sum over stages).")
        bdone = g("runwatch_docker_build_steps_done", "Docker build steps finished "
                  "(BuildKit DONE or CACHED; classic: steps before the current one).")
        score = g("runwatch_score", "Latest score by name.", RID + ["name"])
        best = g("runwatch_best_score", "Best score so far by name.", RID + ["name"])
        errors = c("runwatch_errors", "Error lines and error events.")
        art = g("runwatch_artifact_available", "1 when the artifact is available, 0 while it is not.",
                RID + ["artifact"])
        vm = StateSetMetricFamily("runwatch_vm_power_state", "Power state of a VM the run uses.",
                                  labels=RID + ["vm"])
        art_dl = g("runwatch_artifact_deadline_seconds", "How long after the run ends the artifact may take "
                   "before RunwatchArtifactMissing fires (configured; else the alert's default).", RID + ["artifact"])
        job_metric = g("runwatch_run_metric", "A value the job reported by name (event `metric`).", RID + ["name"])
        folded = c("runwatch_label_values_folded", "Label values from the run's output shown as \"other\": "
                   "the run had too many distinct ones (step action, score/metric name, phase, artifact).")
        lines = c("runwatch_lines", "Lines of output read for the run.")
        cut = c("runwatch_lines_cut", "Lines longer than the limit, cut to it.")
        bad = c("runwatch_line_decode_errors", "Invalid UTF-8 sequences replaced in the run's output.")
        up = g("runwatch_source_up", "1 while the run's source answers, 0 while it fails.", RID + ["source"])
        src_err = c("runwatch_source_errors", "Failed polls of the run's source (a part that failed on its own, "
                    "like an Azure ML job's log read, counts under its own source).", RID + ["source"])
        agent = StateSetMetricFamily("runwatch_agent_state",
                                     "State of a workflow agent (pending, running, completed, failed).",
                                     labels=RID + ["agent"])
        agent_dur = g("runwatch_agent_duration_seconds", "How long a workflow agent ran (reported or measured).",
                      RID + ["agent"])
        flow = c("runwatch_data_flow_bytes", "Bytes passed from one workflow agent to another.",
                 RID + ["from_agent", "to_agent"])
        fams = [info, state, phase, progress, planned, started, completed, failed, steps, bstep, bsteps,
                bdone, score, best, errors, art, vm, lines, cut, bad, up, src_err, agent, agent_dur, flow, job_metric,
                art_dl, folded]
        if self.wall_clock:
            start = g("runwatch_run_start_timestamp_seconds", "When the run started.")
            end = g("runwatch_run_end_timestamp_seconds", "When the run finished; absent while it runs.")
            lastp = g("runwatch_run_last_progress_timestamp_seconds", "Last time the run's progress moved.")
            lastl = g("runwatch_run_last_line_timestamp_seconds", "Last time any output arrived.")
            eta = g("runwatch_run_eta_seconds", "Estimated time left; absent when unknown.")
            cost = g("runwatch_cost_usd", "Money spent so far.")
            rate = g("runwatch_cost_rate_usd_per_hour", "Current billing rate; 0 while not billed.")
            proj = g("runwatch_cost_projected_usd", "Cost so far plus rate times ETA.")
            budget = g("runwatch_cost_budget_usd", "The run's configured budget.")
            art_ts = g("runwatch_artifact_available_timestamp_seconds",
                       "When the artifact became available; absent while it is not.", RID + ["artifact"])
            fams += [start, end, lastp, lastl, eta, cost, rate, proj, budget, art_ts]

        for run, s in snaps:
            rid = run.spec.id
            r = [rid]
            labels = {"run_id": rid, "kind": run.spec.kind, "source": run.spec.source, "url": run.spec.url}
            for k, v in run.spec.labels.items():
                labels.setdefault(k, str(v))
            info.add_metric([], labels)
            st = s["state"]
            state.add_metric(r, {name: name == st for name in RUN_STATES})
            if s["phase"]:
                phase.add_metric(r, {"phase": s["phase"]})
            if s["progress"] is not None:
                progress.add_metric(r, s["progress"])
            if s["tasks_planned"] is not None:
                planned.add_metric(r, s["tasks_planned"])
            started.add_metric(r, s["tasks_started"])
            completed.add_metric(r, s["tasks_completed"])
            failed.add_metric(r, s["tasks_failed"])
            for action, n in s["steps"].items():
                steps.add_metric([rid, action], n)
            if s["build_step"] is not None:
                bstep.add_metric(r, s["build_step"])
            if s["build_steps"] is not None:
                bsteps.add_metric(r, s["build_steps"])
            if s["build_done"] is not None:
                bdone.add_metric(r, s["build_done"])
            for name, v in s["scores"].items():
                score.add_metric([rid, name], v)
            for name, v in s["best_scores"].items():
                best.add_metric([rid, name], v)
            errors.add_metric(r, s["errors"])
            for name, (avail, since) in s["artifacts"].items():
                art.add_metric([rid, name], 1.0 if avail else 0.0)
                if self.wall_clock and avail and since is not None:
                    art_ts.add_metric([rid, name], since)
            for name, v in s["artifact_deadlines"].items():
                art_dl.add_metric([rid, name], v)
            for name, v in s["metrics"].items():
                job_metric.add_metric([rid, name], v)
            if s.get("labels_folded"):              # only a run that had too many values has it
                folded.add_metric(r, s["labels_folded"])
            for vm_name, pstate in s["vm_power"].items():
                vm.add_metric([rid, vm_name], {n: n == pstate for n in VM_POWER_STATES})
            lines.add_metric(r, s["lines"])
            cut.add_metric(r, s["lines_cut"])
            bad.add_metric(r, s["decode_errors"])
            for source, ok in s["sources_up"].items():
                up.add_metric([rid, source], 1.0 if ok else 0.0)
            for source, n in s.get("source_errors", {}).items():
                src_err.add_metric([rid, source], n)
            for name, a in s.get("agents", {}).items():
                agent.add_metric([rid, name], {n: n == a["state"] for n in AGENT_STATES})
                if a["duration"] is not None:
                    agent_dur.add_metric([rid, name], a["duration"])
            for (src, dst), n in s.get("data_flow", {}).items():
                flow.add_metric([rid, src, dst], n)
            if self.wall_clock:
                for fam, key in ((start, "start_ts"), (end, "end_ts"), (lastp, "last_progress_ts"),
                                 (lastl, "last_line_ts"), (eta, "eta"), (cost, "cost"),
                                 (rate, "cost_rate"), (proj, "cost_projected"), (budget, "budget")):
                    v = s[key]
                    if v is not None:
                        fam.add_metric(r, v)
        return [f for f in fams if f.samples]     # no HELP/TYPE noise for what no run has

    # ------------------------------------------------------------ itself

    def _self(self, snaps):
        reg = self.registry
        b = InfoMetricFamily("runwatch_build", "runwatch version.")
        b.add_metric([], {"version": __version__})
        yield b
        yield GaugeMetricFamily("runwatch_runs", "Runs runwatch currently exports.", value=len(snaps))
        yield CounterMetricFamily("runwatch_read_lines", "Lines read from all sources.", value=reg.lines_total)
        yield CounterMetricFamily("runwatch_read_lines_cut", "Lines cut to the length limit, all sources.",
                                  value=reg.lines_cut_total)
        yield CounterMetricFamily("runwatch_read_decode_errors", "Invalid UTF-8 sequences replaced, all sources.",
                                  value=reg.decode_errors_total)
        refused = CounterMetricFamily("runwatch_events_refused", "What a cap on input from outside turned "
                                      "away, by reason (runs, label_values, agents, data_flows, build_vertices; "
                                      "docs/events.md, Limits).", labels=["reason"])
        for reason, n in sorted(reg.refused_total().items()):
            refused.add_metric([reason], n)
        yield refused
        yield GaugeMetricFamily("runwatch_scrape_duration_seconds",
                                "How long the previous collection of these metrics took.",
                                value=self.last_duration)
