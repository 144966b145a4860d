"""Run state: a pure reducer from events to what a run is doing.

`RunState.apply(event)` is the whole logic of runwatch: counts, current phase,
progress, timestamps, ETA, cost. No I/O, no clock (times come from the events
and from the `now` a caller passes), so it is the easiest place to test.

Progress is taken from the coarsest level that has one, in this order:
an explicit outer level (`Position 3/6`, Keras' `Epoch 3/10`, or a job's own
`progress` event with level outer) refined by the inner level; tasks (completed
/ planned); docker build steps (done / total); a progress bar (tqdm or a job's
progress event), itself refined by a bar nested under it (level nested: the
batches of the bar's current epoch, an evaluation between two steps). Bars of
level eval (validation, testing) count only in a run that has no training bar;
level prelude (a sanity check before training) never counts. See `_progress`.
"""
from __future__ import annotations

import collections

from .eta import Tracker
from ..events import (FAILED_RESULTS, MAX_WORD, PAYLOAD_FIELDS, RUN_STATES, TERMINAL_STATES, Event, StepRun,
                      last_events)

MAX_TASK_STEPS = 200     # steps of the current task kept for the JSON API
MAX_AGENTS = 1000        # agents (and data-flow edges) tracked per run: label cardinality bound
MAX_LABEL_VALUES = 100   # distinct values per run of each label taken from its output (step action,
                         # score and metric name, phase, artifact, VM name); the rest become OTHER
MAX_BUILD_VERTICES = 10000   # BuildKit vertices and (stage, step) pairs remembered per run; the rest ignored
MAX_BUILD_REPORT_ERRORS = 100   # error lines a docker build step's output or failure report may hold uncounted:
                                # past them it ends (a line that looks like docker's cannot hide later errors)
OTHER = "other"
# An agent's input and output payloads (optional fields of the agent events) for the status page's
# inspector: what is kept is bounded; the rest is cut (at a UTF-8 character boundary) and counted.
MAX_PAYLOAD_BYTES = 16 * 1024        # bytes kept of one payload
MAX_RUN_PAYLOAD_BYTES = 256 * 1024   # bytes kept of all payloads of a run (the latest input and output per agent)
MAX_AGENT_EVENTS = 50                # events shown per agent (its last ones among the run's)
MAX_RUN_AGENT_EVENTS = 2000          # agent and data-flow events kept per run, all agents (the last ones)
MAX_AGENT_EXECUTIONS = 20            # executions (start to end) kept per agent (its last ones)
MAX_AGENT_TEXT = 1024                # characters kept of an agent's error
MAX_EVENT_TEXT = 256                 # characters kept of a text field in the events kept for the inspector
MAX_REPORTED_TASKS = 256  # task names whose result line may still be repeated by a summary line


class RunState:
    __slots__ = (
        "state", "phase", "status_reason", "start_ts", "end_ts", "last_progress_ts", "last_line_ts",
        "lines", "tasks_planned", "tasks_started", "tasks_completed", "tasks_failed",
        "task_index", "task_total", "current_task", "current_task_steps",
        "steps", "build_step", "build_steps", "build_done", "_bk_started", "_bk_vertex", "_bk_totals",
        "_bk_done", "scores", "best_scores", "score_direction", "errors", "last_error",
        "error_continues", "error_open", "build_report", "build_report_held", "bar_ratio", "bar_eta",
        "bar_eta_ts", "outer_ratio", "outer_total",
        "bar_done", "bar_total", "nested_ratio", "eval_ratio", "outer_plan", "outer_open", "metric_pending",
        "artifacts", "cost_rate", "cost_base", "cost_base_ts", "budget", "vm_power",
        "task_steps", "agents", "data_flow", "metrics", "artifact_deadlines",
        "agent_io", "agent_events", "payload_bytes", "payload_cut_bytes",
        "phases_seen", "labels_folded", "refused", "reported_state", "vm_power_since", "reported_tasks", "_eta",
    )

    def __init__(self) -> None:
        self.state = "pending"
        self.phase: str | None = None
        self.status_reason: str | None = None
        self.start_ts = self.end_ts = self.last_progress_ts = self.last_line_ts = None
        self.lines = 0
        self.tasks_planned: int | None = None
        self.tasks_started = self.tasks_completed = self.tasks_failed = 0
        self.task_index = self.task_total = None
        self.current_task: str | None = None
        self.current_task_steps = 0
        self.steps: dict[str, int] = {}
        self.build_step = self.build_steps = self.build_done = None
        self._bk_started: set = set()
        self._bk_vertex: dict = {}
        self._bk_totals: dict = {}
        self._bk_done: set = set()
        self.scores: dict[str, float] = {}
        self.best_scores: dict[str, float] = {}
        self.score_direction: dict[str, str] = {}
        self.errors = 0
        self.last_error: str | None = None
        self.error_continues = False            # the next error is part of one already accounted for
        self.error_open = False                 # an error was just counted: a `detail` right after it is its text
        self.build_report = False               # a docker build step's output or failure report is being read:
                                                # its error lines are part of the build's error, counted at its end
        self.build_report_held = 0              # error lines it held so far (MAX_BUILD_REPORT_ERRORS)
        self.bar_ratio = self.bar_eta = self.bar_eta_ts = None
        self.outer_ratio = self.outer_total = None
        self.bar_done = self.bar_total = None   # the bar's count: a nested bar refines its current unit
        self.nested_ratio: float | None = None  # the nested bar's fraction of that unit (kept monotone)
        self.eval_ratio: float | None = None    # an evaluation bar's; counts only when no training bar
        self.outer_plan: float | None = None    # the outer level's planned units (configured, or printed alone)
        self.outer_open = False                 # an outer position of an unknown number of units: no ratio
        self.metric_pending: tuple | None = None   # (name, direction, running): its value opens the next line
        self.artifacts: dict[str, tuple[bool, float | None]] = {}
        self.cost_rate: float | None = None     # USD per hour while billed
        self.cost_base = 0.0                    # cost accrued up to cost_base_ts
        self.cost_base_ts: float | None = None  # None: not accruing
        self.budget: float | None = None
        self.vm_power: dict[str, str] = {}
        self.vm_power_since: dict[str, float] = {}   # vm -> when it entered its current power state
        self._eta = Tracker()                   # progress points, phases, history prior (eta.py)
        self.task_steps: list[dict] = []        # the current task's steps (last MAX_TASK_STEPS)
        self.agents: dict[str, dict] = {}       # workflow agents: agent_id -> state, times, sizes
        self.data_flow: dict[tuple[str, str], float] = {}   # (from_agent, to_agent) -> bytes
        self.agent_io: dict[str, dict] = {}     # agent_id -> its payloads, its event count (not in snapshot())
        self.agent_events: collections.deque = collections.deque(maxlen=MAX_RUN_AGENT_EVENTS)   # for the inspector
        self.payload_bytes = 0                  # bytes of payloads kept, all agents (<= MAX_RUN_PAYLOAD_BYTES)
        self.payload_cut_bytes = 0              # bytes of payloads cut, all agents, since the run began
        self.metrics: dict[str, float] = {}     # values the job reported by name (event `metric`)
        self.artifact_deadlines: dict[str, float] = {}   # artifact -> seconds after the run's end it may take
        self.phases_seen: set[str] = set()      # the phases this run has had (label bound)
        self.labels_folded = 0                  # label values that became OTHER (MAX_LABEL_VALUES)
        self.refused: dict[str, int] = {}       # what a cap turned away, by reason (agents, build_vertices)
        self.reported_state: str | None = None  # a status the job posted for a run its process decides
        self.reported_tasks: dict[str, None] = {}   # finished tasks a `repeat` line may report again

    # ------------------------------------------------------------ input

    def lines_seen(self, n: int, ts: float) -> None:
        """n lines of output arrived at ts: the run is alive."""
        self.lines += n
        self.last_line_ts = ts
        if self.state == "pending":
            self._set_state("running", ts)

    def apply(self, e: Event) -> None:
        self.apply_all((e,))

    def apply_all(self, events) -> None:
        """Apply events in order: the same as apply() on each, one call for a block's events.

        The ETA tracker observes the run after each event that can move its phase or progress;
        after the others (_RATIO_NEUTRAL: a step, a score, an error …) it would see what it saw.
        An events.StepRun (the matcher's compact form of a rule's steps) stands for its events."""
        handlers, eta = _HANDLERS, self._eta
        if not isinstance(events, (list, tuple)):
            events = list(events)
        i, n = 0, len(events)
        reset = -1              # where the next task_started that starts the step list over is (n: none)
        later = None            # later[k]: the steps in events[k:] (made when first needed)
        while i < n:
            e = events[i]
            t = e.type
            i += 1
            if t == "step" and (type(e) is StepRun or (i < n and events[i].type == "step")):
                if eta.phase_ts is None:         # the first event the tracker sees: on its own
                    if type(e) is StepRun:
                        first = [e.emit.build_groups(e.groups[0], e.ts)]
                        rest = StepRun(e.groups[1:], e.emit, e.ts)
                        events = list(events[:i - 1]) + first + ([rest] if len(rest) else []) + list(events[i:])
                        n = len(events)
                        e = first[0]
                else:
                    j = i                        # a run of steps (an agent's log): applied as one
                    while j < n and events[j].type == "step":
                        j += 1
                    if reset < j:
                        reset = next((k for k in range(j, n) if events[k].type == "task_started"
                                      and not events[k].fields.get("repeat")), n)
                    # the current task's step list keeps its last MAX_TASK_STEPS: entries only for
                    # those no later step of these pushes out and no later task start drops
                    keep = 0
                    if reset == n:
                        if later is None:
                            later = _steps_after(events)
                        keep = max(0, MAX_TASK_STEPS - later[j])
                    self._steps(events[i - 1:j], keep)
                    i = j
                    continue
            handler = handlers.get(t)
            if t != "error":
                self.error_continues = False     # what continues a report comes right after it
                self.error_open = False          # and so does the line that completes it
            if handler is not None:
                handler(self, e.fields, e.ts)
                if self.state == "pending" and t not in _NOT_STARTING:
                    self._set_state("running", e.ts)
                if t not in _RATIO_NEUTRAL or eta.phase_ts is None:
                    eta.observe(self, e.ts)

    # ------------------------------------------------------------ handlers

    def _label(self, value: str, *seen) -> str:
        """value, or OTHER once the run has MAX_LABEL_VALUES others (in the `seen` collections)."""
        if any(value in c for c in seen) or sum(map(len, seen)) < MAX_LABEL_VALUES:
            return value
        self.labels_folded += 1
        return OTHER

    def _refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def _phase(self, f, ts):
        phase = f["phase"] or None            # "" clears it (a source left the phase it reported)
        if phase is not None:
            phase = self._label(phase, self.phases_seen)
            self.phases_seen.add(phase)
        self.phase = phase

    def _status(self, f, ts):
        self._set_state(f["state"], ts)
        self.status_reason = f.get("reason")

    def report_status(self, f, ts) -> None:
        """A status the job reported about a run whose process decides its end (runs.Registry.apply):
        recorded in reported_state and the reason, the state itself stays."""
        self.reported_state = f["state"]
        reason = f.get("reason")
        self.status_reason = f"the job reported {f['state']}" + (f": {reason}" if reason else "")
        if self.state == "pending":
            self._set_state("running", ts)

    def _set_state(self, state: str, ts: float) -> None:
        if state not in RUN_STATES or state == self.state:
            return
        if state == "running":
            if self.start_ts is None:
                self.start_ts = ts
            self.end_ts = None
        if state in TERMINAL_STATES:
            if self.start_ts is None:
                self.start_ts = ts
            self.end_ts = ts
        self._accrue(ts)
        self.state = state
        self._accrue(ts)

    def _progress(self, f, ts):
        """One level of progress. Levels: outer (epoch k/N, a search position) whose new unit
        starts the bar below it over; the bar (no level, or inner); nested (a bar drawn under the
        bar: its fraction refines the bar's current unit, never goes back within it); eval (a
        validation or test bar: no training progress, unless the run has no other); prelude (a
        sanity check before training: never progress). `last` is a 0-based count's last index
        (Lightning's `Epoch 2/3` is the third of four epochs), `done_index` the 0-based index of
        the unit just done (XGBoost's `[9]`: ten rounds done). An outer position without a total
        takes the planned one (`set_plan`, or an outer event with only `total`: a plan the tool
        printed); with neither, the run's fraction is unknown until a ratio (an end marker) comes."""
        level = f.get("level")
        if level == "prelude":
            return
        ratio = f.get("ratio")
        total = f.get("total")
        done = f.get("done")
        if done is None and "done_index" in f:
            done = f["done_index"] + 1
        if total is None and "last" in f:
            total = f["last"] + 1
        if level == "outer" and ratio is None:
            if done is None and "current" not in f and "percent" not in f:
                if total:                         # a plan: how many units, no position yet
                    self.outer_plan = total
                return
            if total is None:
                if self.outer_ratio == 1.0:       # a bar redrawn after the end marker: still complete
                    return
                total = self.outer_plan
        if ratio is None and total:               # counts before a rounded percentage
            if done is not None:
                ratio = done / total
            elif "current" in f:
                ratio = (f["current"] - 1) / total
        if ratio is None and "percent" in f:
            ratio = f["percent"] / 100.0
        if level == "outer":
            if ratio is None:                     # a position among units nobody counted: unknown
                self.outer_open, self.outer_ratio, self.outer_total = True, None, None
                return
            ratio = _clamp(ratio)
            if ratio != self.outer_ratio:
                self.last_progress_ts = ts
                if self.task_total:              # a new outer position: its inner tasks start over
                    self.task_index = 0
                if self.outer_ratio is not None:     # ... and so does its bar
                    self.bar_ratio = self.bar_done = self.nested_ratio = None
            self.outer_ratio, self.outer_total, self.outer_open = ratio, total, False
            return
        if level == "eval":
            if ratio is not None:
                self.eval_ratio = _clamp(ratio)
            return
        if level == "nested":
            if ratio is not None and self.bar_ratio is not None:
                ratio = _clamp(ratio)
                if self.nested_ratio is None or ratio > self.nested_ratio:
                    self.nested_ratio = ratio
                    self.last_progress_ts = ts
            return
        if ratio is not None:
            ratio = _clamp(ratio)
            if self.bar_ratio == 1.0 and ratio < 1.0 and self.outer_ratio is not None:
                return      # a done bar restarting within its outer unit (Lightning resets it before it
                #             names the next epoch): the unit stays done; the next unit starts it over
            if self.bar_ratio is None or ratio != self.bar_ratio:
                self.last_progress_ts = ts
            if ratio != self.bar_ratio or total != self.bar_total:
                self.nested_ratio = None             # the bar moved on: a new unit to refine
            self.bar_ratio, self.bar_done, self.bar_total = ratio, done, total
        if "eta_seconds" in f:
            self.bar_eta, self.bar_eta_ts = f["eta_seconds"], ts

    def _task_planned(self, f, ts):
        self.tasks_planned = f["total"]

    def _task_started(self, f, ts):
        if f.get("repeat") and f.get("task") is not None and f["task"] == self.current_task:
            return                            # the start of the current task, reported again
        self.tasks_started += 1
        if "total" in f:
            self.tasks_planned = self.task_total = f["total"]
        if "index" in f:
            self.task_index = f["index"] - 1
        self.current_task = f.get("task") or (str(f["index"]) if "index" in f else None)
        self.current_task_steps = 0
        self.task_steps = []
        self.last_progress_ts = ts

    def _task_finished(self, f, ts):
        task = f.get("task")
        if task is not None:
            if f.get("repeat"):               # a summary line repeating a result reported before
                if task in self.reported_tasks:
                    del self.reported_tasks[task]
                    return
            else:
                self.reported_tasks[task] = None
                if len(self.reported_tasks) > MAX_REPORTED_TASKS:
                    del self.reported_tasks[next(iter(self.reported_tasks))]
        self.tasks_completed += 1
        failed = f.get("failed")
        if failed is None:
            failed = str(f.get("result", "")).lower() in FAILED_RESULTS
        if failed:
            self.tasks_failed += 1
        if "total" in f:
            self.tasks_planned = self.task_total = f["total"]
        if "index" in f:
            self.task_index = f["index"]
        self.last_progress_ts = ts

    def _step(self, f, ts):
        action, steps = f.get("action") or "step", self.steps
        if action in steps:
            steps[action] += 1
        else:
            action = self._label(action, steps)
            steps[action] = steps.get(action, 0) + 1
        n = self.current_task_steps = self.current_task_steps + 1
        task_steps = self.task_steps
        task_steps.append({"index": f.get("index", n), "action": action, "ts": ts})
        if len(task_steps) > MAX_TASK_STEPS:
            del task_steps[:-MAX_TASK_STEPS]
        self.last_progress_ts = ts

    def _steps(self, events, keep: int = MAX_TASK_STEPS) -> None:
        """Consecutive step events (and events.StepRuns), as _step on each would apply them
        (tests/test_state.py holds the two equal): the actions counted by distinct action in the
        order they first come (a label keeps its name while the run has fewer than
        MAX_LABEL_VALUES, as _label decides one by one), and only the last MAX_TASK_STEPS
        entries of the current task built, at most `keep` (apply_all knows how many of them
        later events of the same batch leave standing)."""
        if self.state == "pending":
            self._set_state("running", events[0].ts)
        self.error_continues = False
        self.error_open = False
        counts: dict = {}
        total = 0
        for e in events:
            if type(e) is StepRun:
                for raw, c in e.action_counts().items():
                    a = (raw or "step")[:MAX_WORD]
                    counts[a] = counts.get(a, 0) + c
                total += len(e)
            else:
                a = e.fields.get("action") or "step"
                counts[a] = counts.get(a, 0) + 1
                total += 1
        steps = self.steps
        for a, c in counts.items():
            if a in steps:
                steps[a] += c
            elif len(steps) < MAX_LABEL_VALUES:
                steps[a] = c
            else:
                self.labels_folded += c
                steps[OTHER] = steps.get(OTHER, 0) + c
        first = self.current_task_steps + 1
        self.current_task_steps += total
        self.last_progress_ts = events[-1].ts
        need = min(MAX_TASK_STEPS, total, keep)
        if need <= 0:
            return
        tail = last_events(events, need)
        start = first + total - len(tail)
        task_steps = self.task_steps
        task_steps.extend({"index": e.fields.get("index", start + k),
                           "action": a if (a := e.fields.get("action") or "step") in steps else OTHER, "ts": e.ts}
                          for k, e in enumerate(tail))
        if len(task_steps) > MAX_TASK_STEPS:
            del task_steps[:-MAX_TASK_STEPS]

    def _build_step(self, f, ts):
        step, steps = f["step"], f.get("steps")
        if "vertex" in f:                         # BuildKit: count each (stage, step) once
            key = (f.get("stage") or "", step)
            full = len(self._bk_vertex) >= MAX_BUILD_VERTICES
            if (full and f["vertex"] not in self._bk_vertex) or (
                    len(self._bk_started) >= MAX_BUILD_VERTICES and key not in self._bk_started):
                self._refuse("build_vertices")
                return
            self._bk_vertex[f["vertex"]] = key
            if steps is not None and (key[0] in self._bk_totals or len(self._bk_totals) < MAX_BUILD_VERTICES):
                self._bk_totals[key[0]] = steps
            if key not in self._bk_started:
                self._bk_started.add(key)
                self.last_progress_ts = ts
            self.build_step = len(self._bk_started)
            self.build_steps = sum(self._bk_totals.values()) or None
            self.build_done = len(self._bk_done)
        else:                                     # classic: Step 5/12 is the 5th of 12, 4 done
            if step != self.build_step:
                self.last_progress_ts = ts
            self.build_step, self.build_done = step, max(step - 1, 0)
            if steps is not None:
                self.build_steps = steps
            self.build_report = False             # a new step: the last one's output ended

    def _build_step_done(self, f, ts):
        key = self._bk_vertex.get(f["vertex"])
        if key is not None and key not in self._bk_done:
            self._bk_done.add(key)
            self.build_done = len(self._bk_done)
            self.last_progress_ts = ts

    def _build_complete(self, f, ts):
        self.build_report = False                 # the build succeeded: its output's error lines were none
        if not self.build_steps and self.build_step and not self._bk_started:
            self.build_steps = self.build_step    # docker before 1.13 printed "Step 5 :", no total
        if self.build_steps:
            self.build_step = self.build_done = self.build_steps
            self.last_progress_ts = ts

    def _score(self, f, ts):
        name = self._label(f.get("name") or "score", self.scores.keys() | self.best_scores.keys())
        if "direction" in f:
            d = f["direction"] if f["direction"] != "auto" else direction_of(name)
            if d:
                self.score_direction[name] = d
        if "value" in f:
            v = f["value"]
            self.scores[name] = v
            direction = self.score_direction.get(name)
            best = self.best_scores.get(name)
            if f.get("best") or (direction and (best is None or
                                                (v > best if direction == "max" else v < best))):
                self.best_scores[name] = v
        if "best_value" in f:
            self.best_scores[name] = f["best_value"]

    def _error(self, f, ts):
        if f.get("detail"):          # the text of the error just counted (a traceback's `Type: message`
            if self.error_open and f.get("message"):     # line): it replaces the placeholder, counts nothing
                self.last_error = f["message"]
                self.error_open = False
            return
        if f.get("continues"):       # not an error itself: the next error belongs to a report already
            self.error_continues = True      # accounted for (a chained traceback, a quoted one)
            return
        if "build_report" in f:      # true: a docker build step failed (BuildKit "#7 ERROR: ...", redrawn in
            if f["build_report"] and not self.build_report:     # each frame of the terminal display): the lines
                self.build_report_held = 0   # up to the build's own error are its report, no errors of their own
            self.build_report = f["build_report"]    # (or a classic RUN step's output begins); false: ended
            return
        if f.get("build_failed"):    # the build's own error ("failed to solve", "returned a non-zero code"):
            self.build_report = False    # one error for the build, whatever its output and report held
            self.error_continues = False
            self.errors += 1
        elif self.build_report and self.build_report_held < MAX_BUILD_REPORT_ERRORS:
            self.build_report_held += 1      # an error line of a build step's output or of its failure report
            self.error_open = False
            return
        elif self.error_continues:
            self.error_continues = False
        else:
            self.errors += 1
        self.last_error = f.get("message")
        self.error_open = True

    def _artifact(self, f, ts):
        name, available = self._label(f["artifact"], self.artifacts), f.get("available", True)
        prev = self.artifacts.get(name)
        if available:
            since = prev[1] if prev and prev[0] else ts
        else:
            since = None
        self.artifacts[name] = (available, since)
        if "deadline_seconds" in f:
            self.artifact_deadlines[name] = f["deadline_seconds"]

    def _cost(self, f, ts):
        if "cost_usd" in f:
            self.cost_base, self.cost_base_ts = f["cost_usd"], (ts if self._billed() else None)
        if "rate_usd_per_hour" in f:
            self._accrue(ts)
            self.cost_rate = f["rate_usd_per_hour"]
            self._accrue(ts)
        if "budget_usd" in f:
            self.budget = f["budget_usd"]

    def _metric(self, f, ts):
        """A named value (loss, val_loss, learning_rate ...). With a direction (or `auto`: by the
        name, see direction_of) its best so far is runwatch_best_score too; a `running` value (a
        mean over the bar's unit so far, as Keras' bar shows) counts for the best only once the
        bar's unit is complete."""
        name, v = self._label(f["name"], self.metrics), f["value"]
        self.metrics[name] = v
        d = f.get("direction")
        if d is None:
            return
        if d == "auto":
            d = direction_of(name)
            if d is None:
                return
        if f.get("running") and not (self.bar_ratio is not None and self.bar_ratio >= 1.0):
            return
        self.score_direction[name] = d
        best = self.best_scores.get(name)
        if best is None or (v > best if d == "max" else v < best):
            self.best_scores[name] = v

    def _metric_part(self, f, ts):
        """Part of a metric wrapped across lines: a name alone (the end of a line) waits for the
        value alone that opens the next line; any other part (both, neither, a value with no name
        waiting) ends the wait, so a value is never given to a name from further back."""
        name, value = f.get("name") or None, f.get("value")     # "": a template's group that did not match
        pending, self.metric_pending = self.metric_pending, None
        if value is None:
            if name is not None:
                self.metric_pending = (name, f.get("direction"), f.get("running"))
        elif name is None and pending is not None:
            whole = {"name": pending[0], "value": value}
            if pending[1] is not None:
                whole["direction"] = pending[1]
            if pending[2]:
                whole["running"] = pending[2]
            self._metric(whole, ts)

    def _vm_power(self, f, ts):
        self._accrue(ts)
        vm = self._label(f["vm"], self.vm_power)
        if self.vm_power.get(vm) != f["state"] or vm not in self.vm_power_since:
            self.vm_power_since[vm] = ts
        self.vm_power[vm] = f["state"]
        self._accrue(ts)

    # ------------------------------------------------------------ workflow agents

    def _agent(self, agent_id: str) -> dict:
        a = self.agents.get(agent_id)
        if a is None:
            if len(self.agents) >= MAX_AGENTS:
                self._refuse("agents")
                return {}                        # bounded: further agents are not tracked
            a = self.agents[agent_id] = {"state": "pending", "started_ts": None, "ended_ts": None,
                                         "duration": None, "output_size": None, "error": None}
        if "executions" not in a:                # new, or saved by a runwatch without these keys
            a.update(executions=(), executions_total=0, input_bytes=None, output_bytes=None)
        return a

    def _agent_started(self, f, ts):
        a = self._agent(f["agent_id"])
        tracked = bool(a)                        # {} for an agent past MAX_AGENTS
        if tracked:
            ex = a["executions"]
            if ex and ex[-1]["ended_ts"] is None:    # started again before it ended
                last = ex[-1]
                a["executions"] = ex[:-1] + (dict(
                    last, ended_ts=ts, state="interrupted",
                    duration=None if last["started_ts"] is None else max(0.0, ts - last["started_ts"])),)
            self._execution(a, {"started_ts": ts, "ended_ts": None, "state": "running", "duration": None,
                                "error": None})
        a.update(state="running", started_ts=ts, ended_ts=None, duration=None, error=None)
        self._agent_record(f, "agent_started", a if tracked else None, ts)
        self.last_progress_ts = ts

    def _agent_completed(self, f, ts):
        a = self._agent(f["agent_id"])
        tracked = bool(a)
        d = f.get("duration")
        if d is None and a.get("started_ts") is not None:
            d = max(0.0, ts - a["started_ts"])
        a.update(state="completed", ended_ts=ts, duration=d)
        if "output_size" in f:
            a["output_size"] = f["output_size"]
        if tracked:
            self._end_execution(a, "completed", ts, d, None)
        self._agent_record(f, "agent_completed", a if tracked else None, ts)
        if tracked and a.get("output_size") is None and a.get("output_bytes") is not None:
            a["output_size"] = a["output_bytes"]     # no size reported: the output payload's
        self.last_progress_ts = ts

    def _agent_failed(self, f, ts):
        a = self._agent(f["agent_id"])
        tracked = bool(a)
        d = max(0.0, ts - a["started_ts"]) if a.get("started_ts") is not None else None
        error = _cut(f["error"], MAX_AGENT_TEXT) if f.get("error") else None
        a.update(state="failed", ended_ts=ts, duration=d, error=error)
        if tracked:
            self._end_execution(a, "failed", ts, d, error)
        self._agent_record(f, "agent_failed", a if tracked else None, ts)
        self.errors += 1
        self.last_error = f"agent {f['agent_id']} failed" + (f": {error}" if error else "")

    def _data_flow(self, f, ts):
        a, b = self._agent(f["from_agent"]), self._agent(f["to_agent"])   # an agent seen only in a flow is pending
        key = (f["from_agent"], f["to_agent"])
        if key[0] not in self.agents or key[1] not in self.agents:
            return                               # an agent over the cap: its flows are not tracked either
        if key in self.data_flow or len(self.data_flow) < MAX_AGENTS:
            self.data_flow[key] = self.data_flow.get(key, 0.0) + f["data_size"]
        else:
            self._refuse("data_flows")
        entry = {"ts": ts, "type": "data_flow", "from_agent": key[0], "to_agent": key[1], "data_size": f["data_size"]}
        if a or b:
            self.agent_events.append(entry)
            for agent_id, tracked in ((key[0], a), (key[1], b))[:1 if key[0] == key[1] else 2]:
                if tracked:
                    self._agent_io(agent_id)["events_total"] += 1

    # An agent's executions are a tuple of dicts that are replaced, never changed: a snapshot
    # shares them with the state instead of copying them under the registry lock.

    def _execution(self, a: dict, ex: dict) -> None:
        a["executions"] = (tuple(a["executions"]) + (ex,))[-MAX_AGENT_EXECUTIONS:]
        a["executions_total"] += 1

    def _end_execution(self, a: dict, state: str, ts: float, duration, error) -> None:
        """The agent's open execution ends (one without a start is added: it ran, we saw only the end)."""
        ex = a["executions"]
        if ex and ex[-1]["ended_ts"] is None:
            a["executions"] = tuple(ex[:-1]) + (dict(ex[-1], ended_ts=ts, state=state, duration=duration,
                                                     error=error),)
        else:
            start = ts - duration if duration is not None else None
            self._execution(a, {"started_ts": start, "ended_ts": ts, "state": state, "duration": duration,
                                "error": error})

    def _agent_record(self, f: dict, etype: str, a: dict | None, ts: float) -> None:
        """An agent event for the inspector: its payloads kept (bounded), the event in the agent's list.
        a: None for an agent that is not tracked (its payloads count as cut)."""
        agent_id = f["agent_id"]
        entry = {"ts": ts, "type": etype, "agent_id": agent_id}
        for k, v in f.items():
            if k != "agent_id" and k not in PAYLOAD_FIELDS:
                entry[k] = _cut(v, MAX_EVENT_TEXT) if isinstance(v, str) else v
        for k in PAYLOAD_FIELDS:
            if k in f:
                size = self._keep_payload(agent_id, k, f[k], etype, ts, tracked=a is not None)
                entry[k + "_bytes"] = size
                if a is not None:
                    a[k + "_bytes"] = size
        if a is not None:
            self.agent_events.append(entry)
            self._agent_io(agent_id)["events_total"] += 1

    def _agent_io(self, agent_id: str) -> dict:
        io = self.agent_io.get(agent_id)
        if io is None:
            io = self.agent_io[agent_id] = {"input": None, "output": None, "events_total": 0}
        return io

    def _keep_payload(self, agent_id: str, which: str, text: str, etype: str, ts: float, tracked: bool) -> int:
        """Keep the latest `which` payload of an agent within MAX_PAYLOAD_BYTES and what the run's
        MAX_RUN_PAYLOAD_BYTES leaves; returns its size as sent, in bytes."""
        data = text.encode("utf-8", "replace")
        io = self._agent_io(agent_id) if tracked else None
        old = io[which] if io is not None else None
        room = MAX_RUN_PAYLOAD_BYTES - self.payload_bytes + (old["kept_bytes"] if old else 0)
        limit = max(0, min(MAX_PAYLOAD_BYTES, room)) if io is not None else 0
        kept = data[:limit].decode("utf-8", "ignore")      # a character cut in two is dropped
        kept_bytes = len(kept.encode("utf-8"))
        cut = len(data) - kept_bytes
        self.payload_cut_bytes += cut
        if io is not None:
            self.payload_bytes += kept_bytes - (old["kept_bytes"] if old else 0)
            io[which] = {"text": kept, "bytes": len(data), "kept_bytes": kept_bytes, "cut_bytes": cut,
                         "event": etype, "ts": ts}
        return len(data)

    def agent_detail(self, agent_id: str) -> dict | None:
        """One agent for the inspector (the agent API): its state, executions, payloads and last
        events, as plain copies; None for an agent the run does not have."""
        a = self.agents.get(agent_id)
        if a is None:
            return None
        io = self.agent_io.get(agent_id) or {}
        mine = [e for e in self.agent_events
                if e.get("agent_id") == agent_id or e.get("from_agent") == agent_id or e.get("to_agent") == agent_id]
        events = [{k: v for k, v in e.items() if k != "agent_id"} for e in mine[-MAX_AGENT_EVENTS:]]
        agent = dict(a, executions=[dict(x) for x in a.get("executions", ())])     # the caller may change them
        return {"agent": agent, "input": dict(io["input"]) if io.get("input") else None,
                "output": dict(io["output"]) if io.get("output") else None,
                "events": events, "events_total": io.get("events_total", 0),
                "flows_out": [{"to_agent": b, "bytes": n} for (x, b), n in self.data_flow.items() if x == agent_id],
                "flows_in": [{"from_agent": x, "bytes": n} for (x, b), n in self.data_flow.items() if b == agent_id],
                "run_payload_bytes": self.payload_bytes, "run_payload_cut_bytes": self.payload_cut_bytes}

    def _progress_update(self, f, ts):
        fields = {"percent": f["progress"]}
        if "message" in f:
            fields["message"] = f["message"]
        self._progress(fields, ts)

    # ------------------------------------------------------------ cost

    def _billed(self) -> bool:
        if self.vm_power:    # a run on a VM is billed while Azure bills the VM
            return any(s in ("starting", "running", "stopping", "stopped") for s in self.vm_power.values())
        return self.state == "running"

    def _accrue(self, ts: float) -> None:
        """Close the current billing interval at ts and open the next one if billed."""
        if self.cost_base_ts is not None and self.cost_rate:
            self.cost_base += self.cost_rate * max(0.0, ts - self.cost_base_ts) / 3600.0
        self.cost_base_ts = ts if (self._billed() and self.cost_rate) else None

    def cost(self, now: float) -> float | None:
        if self.cost_rate is None and not self.cost_base:
            return None
        c = self.cost_base
        if self.cost_base_ts is not None and self.cost_rate:
            c += self.cost_rate * max(0.0, now - self.cost_base_ts) / 3600.0
        return c

    def current_rate(self) -> float | None:
        if self.cost_rate is None:
            return None
        return self.cost_rate if self._billed() else 0.0

    # ------------------------------------------------------------ derived

    def progress_ratio(self) -> float | None:
        inner = self._inner_ratio()
        if self.outer_ratio is not None:
            if self.outer_total and inner is not None:
                return _clamp(self.outer_ratio + inner / self.outer_total)
            return self.outer_ratio
        if self.outer_open:                      # one unit's fraction of how many units: unknown
            return None
        return inner

    def _inner_ratio(self) -> float | None:
        if self.tasks_planned:
            if self.outer_ratio is not None and self.task_index is not None and self.task_total:
                return _clamp(self.task_index / self.task_total)
            return _clamp(self.tasks_completed / self.tasks_planned)
        if self.build_steps:
            return _clamp((self.build_done or 0) / self.build_steps)
        if self.bar_ratio is None:
            return self.eval_ratio if self.outer_ratio is None else None
        if self.nested_ratio is not None and self.bar_total and self.bar_ratio < 1.0:
            return _clamp(self.bar_ratio + self.nested_ratio / self.bar_total)
        return self.bar_ratio

    def eta_seconds(self, now: float) -> float | None:
        """Time left, or None when nothing honest can be said (the estimator: eta.py)."""
        if self.state != "running":
            return None
        return self._eta.eta(self, now)

    def set_plan(self, total: float | None) -> None:
        """The planned units of the run's outermost level (epochs, boosting rounds) as configured
        (--total, a config's `total:`): used while the tool prints a position without a total; a
        total the tool prints wins."""
        if total:
            self.outer_plan = total

    def set_prior(self, prior) -> None:
        """What the history says about earlier runs of this kind (eta.Prior or None)."""
        self._eta.prior = prior

    @property
    def eta_prior(self):
        """The prior set_prior gave (eta.Prior or None)."""
        return self._eta.prior

    def history_summary(self) -> dict | None:
        """Durations a finished run adds to the history (history.py)."""
        return self._eta.summary(self)

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        """Every slot as plain values (sets, tuples and tuple-keyed dicts included;
        persist.py encodes them). The history prior is not part of it."""
        out = {name: getattr(self, name) for name in self.__slots__ if name != "_eta"}
        out["_eta"] = self._eta.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        """The inverse of to_dict; slots missing from d (an older runwatch) keep their defaults."""
        st = cls()
        for name in cls.__slots__:
            if name == "_eta":
                st._eta = Tracker.from_dict(d.get("_eta") or {})
            elif name in d:
                setattr(st, name, d[name])
        return st

    def snapshot(self, now: float) -> dict:
        """Plain values for the collector, read under the registry lock."""
        eta = self.eta_seconds(now)
        cost = self.cost(now)
        rate = self.current_rate()
        if cost is None:
            projected = None
        elif not rate:
            projected = cost                     # not billed now: nothing more accrues
        elif eta is not None:
            projected = cost + rate * eta / 3600.0
        else:
            projected = None                     # billed, but no honest time left
        return {
            "state": self.state, "status_reason": self.status_reason, "phase": self.phase,
            "start_ts": self.start_ts, "end_ts": self.end_ts,
            "last_progress_ts": self.last_progress_ts, "last_line_ts": self.last_line_ts,
            "progress": self.progress_ratio(), "eta": eta, "lines": self.lines,
            "tasks_planned": self.tasks_planned, "tasks_started": self.tasks_started,
            "tasks_completed": self.tasks_completed, "tasks_failed": self.tasks_failed,
            "current_task": self.current_task, "current_task_steps": self.current_task_steps,
            "steps": dict(self.steps), "build_step": self.build_step, "build_steps": self.build_steps,
            "build_done": self.build_done, "scores": dict(self.scores),
            "best_scores": dict(self.best_scores), "errors": self.errors, "last_error": self.last_error,
            "cost": cost, "cost_rate": rate, "cost_projected": projected, "budget": self.budget,
            "artifacts": dict(self.artifacts), "vm_power": dict(self.vm_power),
            "vm_power_since": dict(self.vm_power_since), "metrics": dict(self.metrics),
            "artifact_deadlines": dict(self.artifact_deadlines), "labels_folded": self.labels_folded,
            "refused": dict(self.refused), "reported_state": self.reported_state,
            "task_steps": [dict(x) for x in self.task_steps],
            "agents": {k: dict(v) for k, v in self.agents.items()}, "data_flow": dict(self.data_flow),
        }


# Which way a metric improves, by its name (direction "auto"): checked in this order, a part of
# the lower-cased name. Losses and errors go down; accuracies, AUC, F1 and scores go up.
LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "mape", "nloglik", "nll", "deviance", "perplexity")
HIGHER_IS_BETTER = ("auc", "acc", "f1", "score", "ndcg", "map", "precision", "recall", "r2", "bleu", "rouge")


def direction_of(name: str) -> str | None:
    """'min', 'max' or None (unknown: no best value is kept unless an event says best)."""
    n = name.lower()
    if any(w in n for w in LOWER_IS_BETTER):
        return "min"
    if any(w in n for w in HIGHER_IS_BETTER):
        return "max"
    return None


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n] + "…"


def _clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def _steps_after(events) -> list[int]:
    """For each position k of events (and len(events)): how many steps events[k:] holds."""
    out = [0] * (len(events) + 1)
    n = 0
    for k in range(len(events) - 1, -1, -1):
        e = events[k]
        if e.type == "step":
            n += len(e) if type(e) is StepRun else 1
        out[k] = n
    return out


# Events that change neither the phase nor the progress ratio: once the ETA tracker has
# seen the run, observing it after them changes nothing (RunState.apply_all skips it).
_RATIO_NEUTRAL = frozenset({"step", "score", "error", "metric", "metric_part", "artifact", "cost", "vm_power",
                            "agent_started", "agent_completed", "agent_failed", "data_flow"})
# Events that do not make a pending run running.
_NOT_STARTING = frozenset({"status", "cost", "vm_power", "artifact"})

_HANDLERS = {
    "phase": RunState._phase, "status": RunState._status, "progress": RunState._progress,
    "task_planned": RunState._task_planned, "task_started": RunState._task_started,
    "task_finished": RunState._task_finished, "step": RunState._step,
    "build_step": RunState._build_step, "build_step_done": RunState._build_step_done,
    "build_complete": RunState._build_complete, "score": RunState._score, "error": RunState._error,
    "artifact": RunState._artifact, "cost": RunState._cost, "vm_power": RunState._vm_power,
    "metric": RunState._metric, "metric_part": RunState._metric_part,
    "agent_started": RunState._agent_started, "agent_completed": RunState._agent_completed,
    "agent_failed": RunState._agent_failed, "data_flow": RunState._data_flow,
    "progress_update": RunState._progress_update,
}
