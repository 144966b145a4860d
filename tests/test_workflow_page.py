"""The status page's workflow view in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against `runwatch demo`, with the page's own Content-Security-Policy in force: the
demo-workflow run shows its agents as a graph (a node per agent, an edge per data flow labelled
with its bytes), a timeline with a bar per execution and the running ones marked, and an inspector
that opens on a click with the agent's output, error and events, its secrets redacted."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import requests

from support.paths import ROOT
from support.waits import wait_for

pytestmark = pytest.mark.stack("chromium")

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
CARD = 'section.card[data-run="demo-workflow"]'
WF = CARD + " .rw-wf"
LONG = 90_000        # ms: one loop of the workflow sample at --speed 3 is about 25 s
TOKEN = "workflow-page-token"
HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="runwatch-chromium-")
    with sync_api.sync_playwright() as p:
        # no bypass_csp: workflow.js must load under the policy the page is served with
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1280, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def fmt_bytes(n: float) -> str:
    """The page's byte labels: decimal units, one decimal from kB on."""
    units, i = ["B", "kB", "MB", "GB", "TB"], 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.1f} {units[i]}" if i else f"{round(n)} {units[i]}"


# one synchronous read of the view, so nodes, edges and bars come from the same render
READ_VIEW = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  const nodes = [...root.querySelectorAll('.rw-wf-graph .node')].map(n => [n.dataset.agent, n.dataset.state]);
  const edges = [...root.querySelectorAll('.rw-wf-graph .edges .edge')].map(e => {
    const lbl = [...root.querySelectorAll('.rw-wf-graph .labels .edge')].find(
      l => l.dataset.from === e.dataset.from && l.dataset.to === e.dataset.to);
    return [e.dataset.from, e.dataset.to, Number(e.dataset.bytes),
            lbl ? lbl.querySelector('.elabel').textContent : null];
  });
  const bars = [...root.querySelectorAll('.rw-wf-tl .exec')].map(b => [b.dataset.agent, b.dataset.state,
    b.dataset.running === 'true', Number(b.getAttribute('width'))]);
  const runningLabels = [...root.querySelectorAll('.rw-wf-tl .tl-dur.running')].map(t => t.textContent);
  return {nodes, edges, bars, runningLabels};
}"""


def test_workflow_view_in_chromium(runwatch_proc, browser):
    rw = runwatch_proc("demo", "--speed", "3", "--events", env=dict(os.environ, RUNWATCH_TOKEN=TOKEN)).wait_up()
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.goto(rw.url + "/")
    assert requests.get(rw.url + "/workflow.js", timeout=5).headers["Content-Type"].startswith("text/javascript")

    # the graph appears for the run with agents, and for no other run
    page.wait_for_selector(WF + " .rw-wf-graph svg", timeout=LONG)
    assert page.locator('section.card[data-run="demo-docker-build"] .rw-wf').count() == 0

    # a running execution is marked in the timeline, and its agent's node says running too
    # (the writer's: by then most of the graph is drawn, which makes a better screenshot)
    page.wait_for_selector(WF + ' .rw-wf-tl .exec[data-running="true"][data-agent="writer"]', timeout=LONG)
    view = page.evaluate(READ_VIEW, WF)
    states = dict(view["nodes"])
    running = [b for b in view["bars"] if b[2]]
    assert running and all(states[agent] == "running" for agent, *_ in running), view
    assert all(st == "running" for _, st, _, _ in running)
    assert view["runningLabels"] and all(t.startswith("▶ running") for t in view["runningLabels"])
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.locator(CARD).screenshot(path=os.path.join(ARTIFACTS, "workflow_running.png"))

    # the whole workflow: a node per agent, an edge per flow with its bytes, a bar per execution,
    # exactly as the JSON API has them
    def view_matches_api():
        run = requests.get(rw.url + "/api/runs/demo-workflow", timeout=5).json()
        v = page.evaluate(READ_VIEW, WF)
        if v is None or run["state"] != "succeeded":
            return False
        api_nodes = {a["agent_id"]: a["state"] for a in run["agents"]}
        api_edges = {(f["from_agent"], f["to_agent"], f["bytes"], fmt_bytes(f["bytes"])) for f in run["data_flow"]}
        api_bars = sorted((a["agent_id"], ex["state"]) for a in run["agents"] for ex in a["executions"])
        if dict(v["nodes"]) != api_nodes or len(v["nodes"]) != len(api_nodes):
            return False
        if {tuple(e) for e in v["edges"]} != api_edges or len(v["edges"]) != len(api_edges):
            return False
        if sorted((b[0], b[1]) for b in v["bars"]) != api_bars:
            return False
        return run, v
    run, v = wait_for(view_matches_api, timeout=LONG / 1000, interval=0.3, what="the workflow view to show the run")
    assert len(run["agents"]) == 5 and len(run["data_flow"]) == 6
    assert ("planner", "researcher", 2048.0, "2.0 kB") in {tuple(e) for e in v["edges"]}
    assert [b[1] for b in v["bars"] if b[0] == "coder"] == ["failed", "completed"]    # it failed, then ran again
    assert all(b[3] > 0 for b in v["bars"]) and not any(b[2] for b in v["bars"])       # finished: nothing running

    # a click on a node opens the inspector: coder's output, its earlier failure, its events.
    # The demo starts over after a while; if it does between two steps, the next loop shows it all again.
    insp = WF + " .rw-wf-insp"

    def inspector(agent: str):
        """The inspector's parts once it shows `agent` (clicked if it is not selected), else None."""
        try:
            if page.locator(f'{WF} .node.selected[data-agent="{agent}"]').count() == 0:
                page.click(f'{WF} .node[data-agent="{agent}"]', timeout=2000)
            box = page.locator(f'{insp}[data-agent="{agent}"][data-loaded="true"]')
            if box.count() == 0 or box.locator('pre.rw-payload[data-which="output"]').count() == 0:
                return None
            return {"output": box.locator('pre.rw-payload[data-which="output"]').inner_text(timeout=2000),
                    "input": box.locator('pre.rw-payload[data-which="input"]').inner_text(timeout=2000),
                    "error": " ".join(box.locator(".rw-err").all_inner_texts()),
                    "events": box.locator("ol.rw-events").inner_text(timeout=2000),
                    "size": box.locator(".rw-osize").inner_text(timeout=2000)}
        except sync_api.Error:          # the node or the inspector was redrawn under the click
            return None

    coder = wait_for(lambda: (c := inspector("coder")) and "agent_completed" in c["events"] and c,
                     timeout=LONG / 1000, interval=0.3, what="the inspector to show coder's output")
    assert page.locator(WF + ' .node.selected[data-agent="coder"]').count() == 1
    assert "cost_by_model.png" in coder["output"] and '"rows": 84' in coder["output"] and "\n" in coder["output"]
    assert "sub_question" in coder["input"]                  # JSON, pretty-printed above
    assert "KeyError('citations')" in coder["error"]         # the failure before the retry
    assert "agent_failed" in coder["events"] and "coder → writer" in coder["events"]
    assert coder["size"] == fmt_bytes(350000)

    # the researcher's output quotes the SAS URL: the inspector shows it redacted
    researcher = wait_for(lambda: (r := inspector("researcher")) and "papers.jsonl" in r["output"] and r,
                          timeout=LONG / 1000, interval=0.3, what="the inspector to show researcher's output")
    assert "sig=<redacted>" in researcher["output"]
    assert "AbC123" not in page.content()
    page.locator(CARD).screenshot(path=os.path.join(ARTIFACTS, "workflow_page.png"))

    # Close hides it again
    page.click(insp + " .ihead button")
    page.wait_for_selector(insp, state="hidden", timeout=5000)

    # names and payloads are text, never markup
    requests.post(rw.url + "/api/runs/hostile-wf/events", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
                  json=[{"type": "agent_started", "agent_id": HOSTILE, "input": HOSTILE},
                        {"type": "data_flow", "from_agent": HOSTILE, "to_agent": "b</text><script>", "data_size": 5},
                        {"type": "agent_failed", "agent_id": HOSTILE, "error": HOSTILE, "output": HOSTILE}],
                  ).raise_for_status()
    hostile = 'section.card[data-run="hostile-wf"] .rw-wf'
    page.wait_for_selector(hostile + " .rw-wf-tl .exec", timeout=10000)
    page.locator(hostile + " .node").first.click()
    page.wait_for_selector(hostile + ' .rw-wf-insp[data-loaded="true"]', timeout=10000)
    assert page.inner_text(hostile + ' pre.rw-payload[data-which="output"]') == HOSTILE
    assert HOSTILE in page.inner_text(hostile + " .rw-err")
    assert page.locator(hostile + " img, " + hostile + " script").count() == 0
    assert page.evaluate("window.__pwned") is None

    # the page's policy let the script run; no script error, no failed request (the favicon aside)
    assert not problems, problems
