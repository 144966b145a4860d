"""The status page's run cards in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against `runwatch demo` and a real `runwatch run -- CMD`: every part of a card shows
with the demo's data, charts have curves, the last error is the exception, the log follows and
stops following, exports download and parse, a failing run raises its notice, and Stop cancels
a real child. The page runs under its own Content-Security-Policy (no bypass)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile

import pytest
import requests

from support.paths import ROOT
from support.procs import child_env
from support.waits import wait_for

pytestmark = pytest.mark.stack("chromium")

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
TOKEN = "card-token"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
T = 30000     # ms: generous, the machine may be slow; every wait ends on the event it waits for

# Stands in for the workflow engineer's static/workflow.js: records what the page hands it.
# Records the browser notifications the page raises (permission granted to the test's origin).
NOTIFICATION_PROBE = """
window.__notified = [];
(function (Real) {
  function Probe(title, opts) { window.__notified.push(title); return new Real(title, opts); }
  Probe.permission = 'granted';
  Probe.requestPermission = function () { return Promise.resolve('granted'); };
  window.Notification = Probe;
})(window.Notification);
"""

WORKFLOW_PROBE = """
window.runwatchWorkflow = { calls: [], render: function (div, run, api) {
  window.runwatchWorkflow.calls.push({run: run.run_id, agents: (run.agents || []).length, api: api,
                                      div: div.className + ':' + div.dataset.run});
  div.textContent = 'workflow of ' + run.run_id;
} };
"""


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="runwatch-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def card(run_id: str) -> str:
    return f'section.card[data-run="{run_id}"]'


def watch_console(page, expected: tuple[str, ...] = ()) -> list[str]:
    """Script errors and console errors (a CSP violation is one), but the answers expected."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not any(
        f"status of {code}" in m.text for code in expected) else None)
    return problems


def probe_workflow(page) -> None:
    page.route("**/workflow.js", lambda route: route.fulfill(status=200, content_type="text/javascript",
                                                             body=WORKFLOW_PROBE))


def until(page, js: str, timeout: int = T):
    """Wait until the expression js is true in the page. Given as a function, so Playwright
    calls it without eval(), which the page's CSP forbids; an expression that throws (an
    element not there yet) counts as false."""
    page.wait_for_function(f"() => {{ try {{ return !!({js}); }} catch (e) {{ return false; }} }}", timeout=timeout)


def test_run_cards_show_everything_with_the_demo(runwatch_proc, browser):
    rw = runwatch_proc("demo", "--speed", "10", "--events", env=dict(os.environ, RUNWATCH_TOKEN=TOKEN)).wait_up()
    browser.grant_permissions(["notifications"], origin=rw.url)
    page = browser.new_page()
    problems = watch_console(page)
    probe_workflow(page)
    page.add_init_script(NOTIFICATION_PROBE)
    page.goto(rw.url + "/")
    for rid in ("demo-agent-eval", "demo-docker-build", "demo-failing-train", "demo-hparam-search",
                "demo-workflow"):
        page.wait_for_selector(card(rid), timeout=T)

    # the agent evaluation on a VM: current task with its steps, VM power and time in it, VNC button, cost
    ae = card("demo-agent-eval")
    page.wait_for_selector(f"{ae} .task .stepchip", timeout=T)
    assert "task" in page.inner_text(f"{ae} .task")
    until(page, f"document.querySelector('{ae} .vmfact dd').textContent.includes(' for ')", timeout=T)
    assert "waa-eval-vm: " in page.inner_text(f"{ae} .vmfact dd")
    vnc = page.query_selector(f"{ae} .links a.btn.vnc")
    assert vnc and vnc.inner_text() == "Open VNC"
    assert vnc.get_attribute("href") == "http://127.0.0.1:8006/vnc.html" and vnc.get_attribute("target") == "_blank"
    until(page, f"document.querySelector('{ae} .facts').textContent.includes('/h')", timeout=T)
    facts = page.inner_text(f"{ae} .facts")
    for label in ("ETA", "STARTED", "ELAPSED", "LAST OUTPUT", "COST SO FAR", "RATE", "PROJECTED", "BUDGET", "TASKS"):
        assert label in facts.upper(), label
    assert "$0.0300" in facts                    # the sample's budget
    # the demo's runs are not launched by runwatch: no Stop button
    assert not page.is_visible(f"{ae} button.stop")

    # the W&B run page as a button; the hyper-parameter search's charts have curves
    hp = card("demo-hparam-search")
    assert page.inner_text(f"{hp} .links a.btn") == "W&B run"
    for series in ("progress %", "cost $", "best score", "score"):
        until(page, f"(document.querySelector('{hp} .chart[data-series=\"{series}\"] svg') || "
                               f"{{dataset: {{}}}}).dataset.points > 1", timeout=T)
    assert page.get_attribute(f'{hp} .chart[data-series="progress %"] polyline', "points").count(",") > 1

    # the docker build: its build step and a progress curve
    db = card("demo-docker-build")
    until(page, f"document.querySelector('{db} .task').textContent.includes('build step')", timeout=T)
    until(page, f"(document.querySelector('{db} .chart[data-series=\"progress %\"] svg') || "
                           f"{{dataset: {{}}}}).dataset.points > 1", timeout=T)

    # the failing training run: the exception as last error (page and API agree), its notice, loss curve
    ft = card("demo-failing-train")
    exc = "FloatingPointError: loss is NaN at step 812"
    until(page, f"document.querySelector('{ft} .err').textContent.includes('{exc}')", timeout=60000)
    wait_for(lambda: requests.get(rw.url + "/api/runs/demo-failing-train", timeout=5).json()["last_error"] == exc,
             timeout=60, what="the API's last error")     # (the demo starts the run over: wait for the moment)
    page.wait_for_selector('#notices .notice[data-run="demo-failing-train"][data-kind="failed"]', timeout=T)
    assert exc in page.inner_text('#notices .notice[data-run="demo-failing-train"]')
    until(page, "window.__notified.includes('runwatch: demo-failing-train failed')")
    until(page, f"document.querySelector('{ft} .chart[data-series=\"loss\"] svg').dataset.points > 1", timeout=60000)

    # the workflow run: its workflow container, handed to workflow.js on every update
    wf = card("demo-workflow")
    page.wait_for_selector(f'{wf} div.workflow[data-run="demo-workflow"]', timeout=T)
    until(page, "window.runwatchWorkflow.calls.length > 1", timeout=T)
    call = page.evaluate("window.runwatchWorkflow.calls[window.runwatchWorkflow.calls.length - 1]")
    assert call["run"] == "demo-workflow" and call["agents"] > 0 and call["api"] == ""
    assert call["div"] == "workflow:demo-workflow"
    assert not page.evaluate("window.runwatchWorkflow.calls.some(c => c.run !== 'demo-workflow')")

    # the log follows new lines; scrolled up it stays put; back at the end it follows again
    log = f"{hp} pre.log"
    until(page, f"document.querySelector('{log}').scrollHeight > document.querySelector('{log}')"
                           f".clientHeight + 40", timeout=60000)
    page.eval_on_selector(log, "e => { e.scrollTop = 0; e.dispatchEvent(new Event('scroll')); }")
    assert page.is_visible(f"{hp} .paused")
    before = page.inner_text(log)
    until(page, f"document.querySelector('{log}').textContent !== {json.dumps(before)}", timeout=T)
    assert page.eval_on_selector(log, "e => e.scrollTop") == 0
    page.eval_on_selector(log, "e => { e.scrollTop = e.scrollHeight; e.dispatchEvent(new Event('scroll')); }")
    assert not page.is_visible(f"{hp} .paused")
    before = page.inner_text(log)
    until(page, f"document.querySelector('{log}').textContent !== {json.dumps(before)}", timeout=T)
    assert page.eval_on_selector(log, "e => e.scrollTop + e.clientHeight >= e.scrollHeight - 4")

    # export: both buttons download a file that parses, with the run's events and samples (the demo
    # starts the run over every few seconds: download until a copy has the loss metric)
    def download(fmt):
        with page.expect_download(timeout=T) as dl:
            page.click(f'{ft} a.export[data-format="{fmt}"]')
        assert dl.value.suggested_filename == f"demo-failing-train.{fmt}"
        with open(dl.value.path(), newline="") as f:
            return f.read()

    def csv_with_loss():
        rows = list(csv.DictReader(io.StringIO(download("csv"))))
        assert {r["record"] for r in rows} <= {"sample", "event"} and rows
        return any(r["type"] == "metric" and r["key"] == "name" and r["value"] == "loss" for r in rows)
    wait_for(csv_with_loss, timeout=60, interval=0.5, what="a CSV export with the loss metric")

    def json_with_loss():
        doc = json.loads(download("json"))
        assert doc["run"]["run_id"] == "demo-failing-train"
        return len(doc["samples"]) > 1 and any(e["type"] == "metric" and e["fields"]["name"] == "loss"
                                               for e in doc["events"])
    wait_for(json_with_loss, timeout=60, interval=0.5, what="a JSON export with the loss metric")

    # a run without progress for longer than the page's stall threshold raises its notice: the agent
    # evaluation waits for Windows to boot without progress (?stall=1: one second is a stall here)
    stall = browser.new_page()
    stall_problems = watch_console(stall)
    probe_workflow(stall)
    stall.goto(rw.url + "/?stall=1")
    stall.wait_for_selector('#notices .notice[data-run="demo-agent-eval"][data-kind="stalled"]', timeout=60000)
    assert "no progress for" in stall.inner_text('#notices .notice[data-run="demo-agent-eval"][data-kind="stalled"]')
    stall.close()
    assert not stall_problems, stall_problems

    os.makedirs(ARTIFACTS, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=os.path.join(ARTIFACTS, "status_page_cards.png"), full_page=True)
    for rid in ("demo-agent-eval", "demo-failing-train", "demo-hparam-search"):
        page.locator(card(rid)).screenshot(path=os.path.join(ARTIFACTS, f"card_{rid}.png"))
    assert not problems, problems            # no script error, no CSP violation


STOPPABLE = ("import sys, time\n"
             "for i in range(100000):\n"
             "    print(f'working {i}', flush=True)\n"
             "    time.sleep(0.2)\n")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_stop_button_cancels_a_runwatch_run_child(runwatch_proc, browser):
    rw = runwatch_proc("run", "--run-id", "stop-me", "--grace", "60", "--kill-after", "5", "--",
                       sys.executable, "-c", STOPPABLE, env=child_env(RUNWATCH_TOKEN=TOKEN)).wait_up()
    run = wait_for(lambda: requests.get(rw.url + "/api/runs/stop-me", timeout=2).json(), what="run stop-me")
    pid = run["process"]["pid"]
    assert alive(pid)
    page = browser.new_page()
    problems = watch_console(page, expected=("401",))     # the wrong token's answer
    answers = ["wrong-token", TOKEN]          # the first answer is refused (401): the page asks again
    asked = []

    def on_dialog(d):
        asked.append(d.message)
        d.accept(answers.pop(0) if answers else "")
    page.on("dialog", on_dialog)
    probe_workflow(page)
    page.goto(rw.url + "/")
    c = card("stop-me")
    page.wait_for_selector(f"{c} button.stop", state="visible", timeout=T)
    until(page, f"document.querySelector('{c} pre.log').textContent.includes('working')", timeout=T)
    page.click(f"{c} button.stop")
    until(page, f"document.querySelector('{c} .badge').textContent === 'canceled'", timeout=T)
    assert len(asked) == 2 and "refused" in asked[1]
    assert page.evaluate("sessionStorage.getItem('runwatch-token')") == TOKEN
    wait_for(lambda: not alive(pid), timeout=20, what=f"child {pid} gone")
    assert not page.is_visible(f"{c} button.stop")
    assert requests.get(rw.url + "/api/runs/stop-me", timeout=2).json()["state"] == "canceled"
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.locator(c).screenshot(path=os.path.join(ARTIFACTS, "card_canceled.png"))
    assert not problems, problems
