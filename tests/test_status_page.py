"""The status page in real headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright; no browser download) against `runwatch demo`: the runs
show, a progress bar moves without a reload, log lines appear, a SAS secret
does not, pushes arrive within 1 s, and the page reconnects by itself."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import pytest
import requests

from support.paths import ROOT
from support.waits import wait_for

pytestmark = pytest.mark.stack("chromium")

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
TOKEN = "page-token"
RUNS = ("demo-agent-eval", "demo-docker-build", "demo-failing-train", "demo-hparam-search", "demo-workflow")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="runwatch-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1280, "height": 900},
                                                   bypass_csp=True)   # the page's CSP forbids eval, which polling uses
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def card(run_id: str) -> str:
    return f'section.card[data-run="{run_id}"]'


def test_status_page_live_in_chromium(runwatch_proc, browser):
    env = dict(os.environ, RUNWATCH_TOKEN=TOKEN)
    rw = runwatch_proc("demo", "--speed", "10", "--events", env=env).wait_up()
    page = browser.new_page()
    page.goto(rw.url + "/")
    page.evaluate("window.__notReloaded = true")

    # every demo run shows up, LIVE
    for rid in RUNS:
        page.wait_for_selector(card(rid), timeout=30000)
    page.wait_for_function("document.getElementById('live').textContent.includes('LIVE')", timeout=30000)

    # a progress bar moves without a reload
    fill = card("demo-hparam-search") + " .fill"
    page.wait_for_function(f"document.querySelector('{fill}').dataset.progress !== ''", timeout=30000)
    first = page.eval_on_selector(fill, "e => e.dataset.progress")
    page.wait_for_function(f"document.querySelector('{fill}').dataset.progress !== '{first}'", timeout=30000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("window.__runwatch.updates") > 1

    # log lines appear; the SAS URL line shows, its signature does not
    log = card("demo-workflow") + " pre.log"
    page.wait_for_function(f"(document.querySelector('{log}') || {{}}).textContent && "
                           f"document.querySelector('{log}').textContent.includes('papers.jsonl?sv=2022-11-02')",
                           timeout=30000)
    text = page.inner_text(log)
    assert "sig=<redacted>" in text
    html = page.content()
    assert "AbC123" not in html and "secret%3D" not in html
    assert "AbC123" not in requests.get(rw.url + "/api/runs/demo-workflow", timeout=5).text

    # push latency: an event posted -> visible in the page
    auth = {"Authorization": f"Bearer {TOKEN}"}
    requests.post(rw.url + "/api/runs/probe/events", json={"type": "phase", "phase": "warmup"}, headers=auth,
                  timeout=5).raise_for_status()
    page.wait_for_selector(card("probe"), timeout=30000)
    lat = []
    for i in range(5):
        phase = f"probe-{i}-{time.time_ns()}"
        t0 = time.perf_counter()
        requests.post(rw.url + "/api/runs/probe/events", json={"type": "phase", "phase": phase}, headers=auth,
                      timeout=5).raise_for_status()
        page.wait_for_function(f"document.querySelector('{card('probe')} .phase').textContent.includes('{phase}')",
                               timeout=30000, polling=10)
        lat.append(time.perf_counter() - t0)
        time.sleep(0.3)
    print(f"\nSSE change->browser latency: median {statistics.median(lat) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms over {len(lat)}")     # a figure, not a bound: each change arrived

    # a screenshot once the workflow agents are on screen, for a person to look at
    page.wait_for_selector(card("demo-workflow") + " .agent", timeout=30000)
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "status_page.png"), full_page=True)

    # runwatch goes away: RECONNECTING; it comes back on the same port: LIVE again, by itself
    rw.stop()
    page.wait_for_function("document.getElementById('live').textContent.includes('RECONNECTING') || "
                           "document.getElementById('live').textContent.includes('OFFLINE')", timeout=30000)
    rw2 = runwatch_proc("demo", "--speed", "10", port=rw.port, env=env).wait_up()
    page.wait_for_function("document.getElementById('live').textContent.includes('LIVE')", timeout=30000)
    wait_for(lambda: page.query_selector(card("probe")) is None, timeout=30, what="old runs gone after restart")
    assert page.evaluate("window.__notReloaded") is True
    rw2.stop()
