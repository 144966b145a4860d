/* runwatch status page: one card per run, fed by /api/stream (Server-Sent Events).
   No build step, no CDN: plain DOM. Run data is only ever set as text or attributes
   (textContent, setAttribute), never parsed as HTML. */
"use strict";
(function () {
  var API = "/api";
  var TOKEN_KEY = "runwatch-token";          // sessionStorage: this tab only
  var MAX_LINES = 200;                       // lines a card keeps (the server sends the last 50, then new ones)
  var MAX_POINTS = 720;                      // points a chart keeps (history from the server, then live)
  var POINT_GAP = 1;                         // seconds between live points
  var TERMINAL = {succeeded: 1, failed: 1, canceled: 1};
  var params = new URLSearchParams(location.search);
  var STALL = Number(params.get("stall")) > 0 ? Number(params.get("stall")) : 1800;  // as the stall alert

  var runsEl = document.getElementById("runs");
  var liveEl = document.getElementById("live");
  var noticesEl = document.getElementById("notices");
  var notifyBtn = document.getElementById("notify");
  var runs = {};            // run_id -> latest view
  var cards = {};           // run_id -> card
  var serverNow = null;     // server time of the last push
  var clockOffset = 0;      // server time - browser time, seconds
  var noticed = {};         // run_id + start -> kind: notices already raised
  window.__runwatch = {updates: 0, version: null, receivedAt: null, notices: []};

  function setLive(cls, text) { liveEl.className = cls; liveEl.lastChild.textContent = text; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function num(x) { return typeof x === "number" && isFinite(x); }
  function dur(s) {
    if (!num(s)) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (d) return d + " d " + (h % 24) + " h";
    if (h) return h + " h " + (m % 60) + " min";
    return m + " min " + (s % 60) + " s";
  }
  function usd(x) { return num(x) ? "$" + (Math.abs(x) < 1 ? x.toFixed(4) : x.toFixed(2)) : "–"; }
  function short(x) {
    if (!num(x)) return "–";
    var a = Math.abs(x);
    if (a !== 0 && (a < 0.001 || a >= 1e6)) return x.toExponential(2);
    return a >= 100 ? x.toFixed(0) : a >= 1 ? x.toFixed(2) : x.toFixed(4);
  }
  function bytes(n) {
    if (!num(n)) return "";
    var u = ["B", "kB", "MB", "GB"], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function clock(ts) {
    if (!num(ts)) return "–";
    var d = new Date(ts * 1000), p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
           p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function now() { return Date.now() / 1000 + clockOffset; }
  function httpUrl(u) { return typeof u === "string" && /^https?:\/\//i.test(u); }

  function fact(parent, label, cls) {
    var d = el("div", cls || ""); d.appendChild(el("dt", "", label)); var v = el("dd"); d.appendChild(v);
    parent.appendChild(d); return v;
  }

  // ------------------------------------------------------------ the card

  function makeCard(r) {
    var c = el("section", "card"); c.dataset.run = r.run_id;
    var p = {lines: [], series: {}, follow: true};
    var top = el("div", "top");
    top.appendChild(p.rid = el("span", "rid", r.run_id));
    top.appendChild(p.kind = el("span", "kind"));
    top.appendChild(p.badge = el("span", "badge"));
    p.phase = el("span", "phase"); top.appendChild(p.phase);
    c.appendChild(top);
    p.task = el("div", "task"); c.appendChild(p.task);
    var bar = el("div", "bar"); bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0"); bar.setAttribute("aria-valuemax", "100");
    p.fill = el("div", "fill"); bar.appendChild(p.fill); p.bar = bar;
    var prog = el("div", "prog"); prog.appendChild(bar);
    p.pct = el("span", "pct"); prog.appendChild(p.pct);
    c.appendChild(prog);
    var facts = el("dl", "facts");
    p.eta = fact(facts, "ETA"); p.started = fact(facts, "Started"); p.elapsed = fact(facts, "Elapsed");
    p.age = fact(facts, "Last output");
    p.cost = fact(facts, "Cost so far"); p.rate = fact(facts, "Rate"); p.proj = fact(facts, "Projected");
    p.budget = fact(facts, "Budget");
    p.tasks = fact(facts, "Tasks"); p.errors = fact(facts, "Errors"); p.lines_n = fact(facts, "Lines");
    p.vm = fact(facts, "VM", "vmfact");
    p.vmBox = p.vm.parentNode;
    c.appendChild(facts);
    p.links = el("div", "links"); c.appendChild(p.links);
    p.charts = el("div", "charts"); c.appendChild(p.charts);
    p.agents = el("div", "agents"); c.appendChild(p.agents);
    p.err = el("div", "err"); c.appendChild(p.err);
    var det = el("details"); det.open = true;
    p.summary = el("summary", "", "Last lines"); det.appendChild(p.summary);
    var wrap = el("div", "logwrap");
    p.log = el("pre", "log"); wrap.appendChild(p.log);
    p.paused = el("span", "paused", "paused — scroll to the end to follow"); p.paused.hidden = true;
    p.paused.addEventListener("click", function () { p.log.scrollTop = p.log.scrollHeight; });
    wrap.appendChild(p.paused);
    det.appendChild(wrap); c.appendChild(det);
    p.log.addEventListener("scroll", function () {
      p.follow = p.log.scrollTop + p.log.clientHeight >= p.log.scrollHeight - 4;
      p.log.dataset.follow = p.follow ? "1" : "0";
      p.paused.hidden = p.follow;
    });
    var actions = el("div", "actions");
    var a = el("a", "", "JSON"); a.href = API + "/runs/" + encodeURIComponent(r.run_id); actions.appendChild(a);
    ["csv", "json"].forEach(function (fmt) {
      var x = el("a", "btn export", "Export " + fmt.toUpperCase());
      x.href = API + "/runs/" + encodeURIComponent(r.run_id) + "/export?format=" + fmt;
      x.setAttribute("download", r.run_id + "." + fmt);
      x.dataset.format = fmt;
      actions.appendChild(x);
    });
    p.stop = el("button", "stop", "Stop run"); p.stop.type = "button";
    p.stop.addEventListener("click", function () { stopRun(r.run_id, p.stop); });
    actions.appendChild(p.stop);
    c.appendChild(actions);
    var card = {el: c, p: p, id: r.run_id, serial: null};
    loadHistory(card);
    return card;
  }

  // ------------------------------------------------------------ stop

  function askToken(again) {
    var t = prompt(again ? "That token was refused. API token (printed when runwatch started):"
                         : "API token (printed when runwatch started):");
    return t ? t.trim() : "";
  }

  function stopRun(id, btn, again) {
    var token = (!again && sessionStorage.getItem(TOKEN_KEY)) || askToken(again);
    if (!token) return;
    btn.disabled = true;
    fetch(API + "/runs/" + encodeURIComponent(id) + "/cancel",
          {method: "POST", headers: {"Authorization": "Bearer " + token}})
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (j) { return [res, j]; });
      })
      .then(function (x) {
        var res = x[0], body = x[1];
        if (res.ok) { sessionStorage.setItem(TOKEN_KEY, token); btn.textContent = "Stopping…"; return; }
        btn.disabled = false;
        if (res.status === 401) { sessionStorage.removeItem(TOKEN_KEY); stopRun(id, btn, true); return; }
        notice(id, "error", "Stop failed", body.error || ("HTTP " + res.status));
      }).catch(function (e) { btn.disabled = false; notice(id, "error", "Stop failed", String(e)); });
  }

  // ------------------------------------------------------------ charts

  function seriesOf(r) {             // name -> value, for one moment of a run
    var out = {"progress %": num(r.progress) ? r.progress * 100 : null, "cost $": r.cost_usd};
    var m = r.metrics || {}, b = r.best_scores || {}, s = r.scores || {};
    Object.keys(m).slice(0, 6).forEach(function (k) { out[k] = m[k]; });
    Object.keys(b).slice(0, 3).forEach(function (k) { out["best " + k] = b[k]; });
    Object.keys(s).slice(0, 3).forEach(function (k) { out[k] = s[k]; });
    return out;
  }

  function addPoint(card, ts, values) {
    var ser = card.p.series;
    Object.keys(values).forEach(function (k) {
      var v = values[k];
      if (!num(v)) return;
      var pts = ser[k] || (ser[k] = []), n = pts.length;
      if (n && pts[n - 1][0] >= ts) return;
      if (n >= 2 && ts - pts[n - 2][0] < POINT_GAP) pts[n - 1] = [ts, v];   // the newest moves until the next is due
      else pts.push([ts, v]);
      if (pts.length > MAX_POINTS) pts.splice(0, pts.length - MAX_POINTS);
    });
  }

  function loadHistory(card) {
    card.p.series = {};
    fetch(API + "/runs/" + encodeURIComponent(card.id) + "/history")
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (h) {
        if (!h) return;
        var live = card.p.series;
        card.p.series = {};
        h.samples.forEach(function (s) {
          addPoint(card, s.ts, seriesOf({progress: s.progress, cost_usd: s.cost_usd, metrics: s.metrics,
                                         best_scores: s.best_scores, scores: s.scores}));
        });
        Object.keys(live).forEach(function (k) {     // points that arrived while the history loaded
          live[k].forEach(function (pt) { var o = {}; o[k] = pt[1]; addPoint(card, pt[0], o); });
        });
        drawCharts(card);
      }).catch(function () { /* the live points still come */ });
  }

  function drawCharts(card) {
    var p = card.p, names = Object.keys(p.series).filter(function (k) { return p.series[k].length; });
    var have = {};
    names.forEach(function (k) {
      have[k] = true;
      var ch = p.charts.querySelector('.chart[data-series="' + CSS.escape(k) + '"]');
      if (!ch) {
        ch = el("div", "chart"); ch.dataset.series = k;
        var ct = el("div", "ct"); ct.appendChild(el("span", "", k)); ct.appendChild(el("b"));
        ch.appendChild(ct);
        var s = svg("svg", {viewBox: "0 0 100 40", preserveAspectRatio: "none", role: "img"});
        s.appendChild(svg("polygon")); s.appendChild(svg("polyline"));
        ch.appendChild(s);
        var lo = el("div", "lo"); lo.appendChild(el("span")); lo.appendChild(el("span"));
        ch.appendChild(lo);
        p.charts.appendChild(ch);
      }
      var pts = p.series[k];
      var t0 = pts[0][0], t1 = pts[pts.length - 1][0], lo_ = Infinity, hi = -Infinity;
      pts.forEach(function (q) { if (q[1] < lo_) lo_ = q[1]; if (q[1] > hi) hi = q[1]; });
      if (k === "progress %") { lo_ = 0; hi = 100; }
      if (k === "cost $") lo_ = Math.min(0, lo_);
      var span = t1 - t0 || 1, range = hi - lo_ || Math.abs(hi) || 1;
      var xy = pts.map(function (q) {
        var x = pts.length === 1 ? 100 : (q[0] - t0) / span * 100, y = 38 - (q[1] - lo_) / range * 36;
        return x.toFixed(2) + "," + y.toFixed(2);
      });
      var svgEl = ch.querySelector("svg");
      svgEl.dataset.points = String(pts.length);
      svgEl.setAttribute("aria-label", k + ": " + pts.length + " points");
      svgEl.querySelector("polyline").setAttribute("points", xy.join(" "));
      svgEl.querySelector("polygon").setAttribute("points", "0,40 " + xy.join(" ") + " 100,40");
      var fmt = k === "cost $" ? usd : k === "progress %" ? function (v) { return v.toFixed(1) + " %"; } : short;
      var vals = pts.map(function (q) { return q[1]; });
      ch.querySelector(".ct b").textContent = fmt(vals[vals.length - 1]);
      var spans = ch.querySelectorAll(".lo span");
      spans[0].textContent = fmt(Math.min.apply(null, vals)) + " – " + fmt(Math.max.apply(null, vals));
      spans[1].textContent = "over " + dur(t1 - t0);
    });
    Array.prototype.forEach.call(p.charts.querySelectorAll(".chart"), function (ch) {
      if (!have[ch.dataset.series]) ch.remove();
    });
  }

  // ------------------------------------------------------------ notices

  function notice(runId, kind, title, msg) {
    Array.prototype.forEach.call(noticesEl.children, function (old) {     // one a run and kind: the newest
      if (old.dataset.run === runId && old.dataset.kind === kind) old.remove();
    });
    var n = el("div", "notice " + kind); n.dataset.run = runId; n.dataset.kind = kind;
    n.dataset.at = clock(now());
    var body = el("div"); body.appendChild(el("b", "", title)); body.appendChild(el("span", "msg", msg || ""));
    body.appendChild(el("span", "msg", n.dataset.at));
    n.appendChild(body);
    var x = el("button", "", "×"); x.type = "button"; x.title = "dismiss";
    x.addEventListener("click", function () { n.remove(); });
    n.appendChild(x);
    noticesEl.appendChild(n);
    while (noticesEl.children.length > 6) noticesEl.firstChild.remove();
    window.__runwatch.notices.push({run: runId, kind: kind, title: title});
    if (window.Notification && Notification.permission === "granted" && kind !== "error") {
      try { new Notification("runwatch: " + title, {body: msg || "", tag: runId + ":" + kind}); } catch (e) { /* */ }
    }
  }

  function watch(prev, r, t) {      // raise a notice when a run fails or stalls while the page looks
    var key = r.run_id + "@" + (r.start_ts || "");
    if (r.state === "failed" && prev && prev.state !== "failed" && noticed[key] !== "failed") {
      noticed[key] = "failed";
      notice(r.run_id, "failed", r.run_id + " failed",
             (r.last_error ? r.last_error : "") + (r.status_reason ? " (" + r.status_reason + ")" : ""));
    }
    if (r.state === "running") {
      var since = r.last_progress_ts || r.start_ts;
      var stalled = num(since) && t - since > STALL;
      if (stalled && !noticed[key + ":stall:" + since]) {
        noticed[key + ":stall:" + since] = true;
        notice(r.run_id, "stalled", r.run_id + " stalled", "no progress for " + dur(t - since) +
               (r.phase ? " (phase " + r.phase + ")" : ""));
      }
    }
  }

  if (window.Notification && Notification.permission === "default") {
    notifyBtn.hidden = false;
    notifyBtn.addEventListener("click", function () {
      Notification.requestPermission().then(function () { notifyBtn.hidden = true; });
    });
  }

  // ------------------------------------------------------------ update

  function linkButtons(p, r) {
    var key = JSON.stringify(r.links || []);
    if (p.linksKey === key) return;
    p.linksKey = key;
    p.links.textContent = "";
    (r.links || []).forEach(function (l) {
      if (!httpUrl(l.url)) return;
      var b = el("a", "btn" + (/vnc/i.test(l.name) ? " vnc" : ""), l.name);
      b.setAttribute("href", l.url); b.target = "_blank"; b.rel = "noopener noreferrer";
      b.dataset.link = l.source; b.title = l.url;
      p.links.appendChild(b);
    });
    p.links.style.display = p.links.children.length ? "" : "none";
  }

  function taskLine(p, r) {
    var ct = r.current_task, key = JSON.stringify([ct, r.build_step, r.build_steps, r.phase]);
    if (p.taskKey === key) return;
    p.taskKey = key;
    p.task.textContent = "";
    if (ct && (ct.task_id || (ct.steps && ct.steps.length))) {
      p.task.appendChild(el("span", "", "task "));
      p.task.appendChild(el("b", "", ct.task_id || "–"));
      p.task.appendChild(el("span", "kind", ct.step_count + " step" + (ct.step_count === 1 ? "" : "s")));
      var steps = (ct.steps || []).slice(-8);
      steps.forEach(function (s, i) {
        p.task.appendChild(el("span", "stepchip" + (i === steps.length - 1 ? " last" : ""), s.index + " " + s.action));
      });
    } else if (num(r.build_step)) {
      p.task.appendChild(el("span", "", "build step "));
      p.task.appendChild(el("b", "", r.build_step + (r.build_steps ? " / " + r.build_steps : "")));
      if (num(r.build_done)) p.task.appendChild(el("span", "kind", r.build_done + " done"));
    }
    p.task.style.display = p.task.children.length ? "" : "none";
  }

  function setLines(p, lines, replace) {
    if (replace) p.lines = lines.slice(-MAX_LINES);
    else if (lines.length) { p.lines = p.lines.concat(lines); if (p.lines.length > MAX_LINES) p.lines.splice(0, p.lines.length - MAX_LINES); }
    else return;
    var text = p.lines.join("\n");
    if (p.log.textContent === text) return;
    var keep = p.log.scrollTop;
    p.log.textContent = text;
    if (p.follow) p.log.scrollTop = p.log.scrollHeight; else p.log.scrollTop = keep;
    p.summary.textContent = p.lines.length ? "Last " + p.lines.length + " lines" : "No output yet";
    p.log.style.display = p.lines.length ? "" : "none";
  }

  function update(card, r, fresh) {
    var p = card.p, t = now();
    p.kind.textContent = r.kind + (r.source ? " · " + r.source : "");
    p.badge.textContent = r.state; p.badge.className = "badge " + r.state;
    p.phase.textContent = ""; if (r.phase) { p.phase.append("phase "); p.phase.appendChild(el("b", "", r.phase)); }
    taskLine(p, r);
    var pr = r.progress;
    var pct = num(pr) ? Math.round(pr * 1000) / 10 : null;
    p.fill.style.width = (pct === null ? 0 : pct) + "%";
    p.fill.dataset.progress = pct === null ? "" : String(pct);
    p.fill.className = "fill" + (r.state === "succeeded" ? " done" : (r.state === "failed" || r.state === "canceled") ? " bad" : "");
    p.bar.setAttribute("aria-valuenow", pct === null ? "" : String(pct));
    p.pct.textContent = pct === null ? "no progress reported" : pct.toFixed(pct < 10 ? 1 : 0) + " %";
    p.pct.className = pct === null ? "pct none" : "pct";
    var running = r.state === "running";
    var etaLeft = num(r.eta_seconds) ? Math.max(0, r.eta_seconds - (running && serverNow ? t - serverNow : 0)) : null;
    p.eta.textContent = running ? dur(etaLeft) : "–";
    p.started.textContent = clock(r.start_ts);
    p.elapsed.textContent = r.start_ts ? dur((r.end_ts || t) - r.start_ts) : "–";
    var age = r.last_line_ts ? t - r.last_line_ts : null;
    p.age.textContent = age === null ? "never" : dur(age) + " ago";
    p.age.className = (running && age !== null && age > 120) ? "stale" : "";
    p.cost.textContent = usd(r.cost_usd);
    p.rate.textContent = num(r.cost_rate_usd_per_hour) ? usd(r.cost_rate_usd_per_hour) + "/h" : "–";
    p.proj.textContent = usd(r.cost_projected_usd);
    p.proj.className = (num(r.budget_usd) && r.cost_projected_usd > r.budget_usd) ? "stale" : "";
    p.budget.textContent = num(r.budget_usd) ? usd(r.budget_usd) : "–";
    p.budget.className = (num(r.budget_usd) && r.cost_usd > r.budget_usd) ? "stale" : "";
    p.tasks.textContent = r.total_tasks ? (r.tasks_completed + " / " + r.total_tasks +
                          (r.tasks_failed ? " (" + r.tasks_failed + " failed)" : "")) :
                          (r.tasks_completed ? String(r.tasks_completed) : "–");
    p.errors.textContent = String(r.errors || 0);
    p.lines_n.textContent = String(r.lines || 0);
    var vms = Object.keys(r.vm_power || {});
    p.vmBox.style.display = vms.length ? "" : "none";
    p.vm.textContent = vms.map(function (vm) {
      var since = (r.vm_power_since || {})[vm];
      return vm + ": " + r.vm_power[vm] + (num(since) ? " for " + dur(t - since) : "");
    }).join("; ");
    p.vm.dataset.power = vms.length ? r.vm_power[vms[0]] : "";
    linkButtons(p, r);
    if (fresh) {
      p.agents.textContent = "";
      (r.agents || []).forEach(function (a) {
        var chip = el("span", "agent " + a.state, a.agent_id + " · " + a.state +
                     (num(a.duration) ? " · " + dur(a.duration) : "") + (a.output_size ? " · " + bytes(a.output_size) : ""));
        if (a.error) chip.title = a.error;
        p.agents.appendChild(chip);
      });
      p.err.textContent = "";
      if (r.last_error) { p.err.appendChild(el("span", "lbl", "last error")); p.err.appendChild(el("span", "msg", r.last_error)); }
      if (r.agents && r.agents.length) workflow(card, r);
    }
    p.stop.style.display = (r.cancellable && !TERMINAL[r.state]) ? "" : "none";
    if (TERMINAL[r.state]) { p.stop.disabled = false; p.stop.textContent = "Stop run"; }
  }

  function workflow(card, r) {
    var div = card.p.workflow;
    if (!div) {
      div = card.p.workflow = el("div", "workflow"); div.dataset.run = r.run_id;
      card.p.agents.parentNode.insertBefore(div, card.p.agents.nextSibling);
    }
    if (window.runwatchWorkflow && typeof window.runwatchWorkflow.render === "function") {
      // apiBase: the origin part of the API's address ("" = this page's), as workflow.js builds
      // apiBase + "/api/runs/..."
      try { window.runwatchWorkflow.render(div, r, ""); } catch (e) { if (window.console) console.error(e); }
    }
  }

  function apply(change, t) {         // one run's new view (whole, or only what changed) from a push
    var prev = runs[change.run_id];
    var card = cards[change.run_id];
    var replaced = !!change.recent_lines;
    var r = replaced || !prev ? Object.assign({}, change) : Object.assign({}, prev, change);
    var lines = change.recent_lines || change.new_lines || [];
    if (change.lines_skipped) lines = ["… " + change.lines_skipped + " lines not shown"].concat(lines);
    delete r.recent_lines; delete r.new_lines; delete r.lines_skipped;
    if (!card) { card = cards[r.run_id] = makeCard(r); placeCard(card); }
    else if (replaced && prev && prev.start_ts !== r.start_ts) { loadHistory(card); card.p.taskKey = null; }
    runs[r.run_id] = r;
    update(card, r, true);
    setLines(card.p, lines, replaced);
    addPoint(card, t, seriesOf(r));
    drawCharts(card);
    watch(prev, r, t);
  }

  function placeCard(card) {
    var ids = Object.keys(cards).sort(), i = ids.indexOf(card.id);
    var next = null;
    for (var j = i + 1; j < ids.length; j++) { if (cards[ids[j]].el.parentNode === runsEl) { next = cards[ids[j]].el; break; } }
    var empty = runsEl.querySelector(".empty"); if (empty) empty.remove();
    runsEl.insertBefore(card.el, next);
  }

  function remove(id) {
    if (cards[id]) { cards[id].el.remove(); delete cards[id]; }
    delete runs[id];
    if (!Object.keys(cards).length) showEmpty();
  }

  function showEmpty() {
    runsEl.textContent = "";
    runsEl.appendChild(el("div", "empty", "No runs yet. Start one with runwatch run -- CMD, or post events."));
  }

  function received(data, snapshot) {
    serverNow = data.now;
    clockOffset = data.now - Date.now() / 1000;
    if (data.server) document.getElementById("ver").textContent = "v" + data.server.version;
    if (snapshot) {
      var seen = {};
      data.runs.forEach(function (r) { seen[r.run_id] = true; });
      Object.keys(cards).forEach(function (id) { if (!seen[id]) remove(id); });
      Object.keys(cards).forEach(function (id) { loadHistory(cards[id]); });
      if (!data.runs.length) showEmpty();
    }
    data.runs.forEach(function (r) { apply(r, data.now); });
    (data.removed || []).forEach(remove);
    window.__runwatch.updates++; window.__runwatch.version = data.version;
    window.__runwatch.receivedAt = performance.now();
    setLive("live", "LIVE");
  }

  function tick() {             // ages, ETAs and stalls move between pushes
    var t = now();
    Object.keys(runs).forEach(function (id) {
      if (cards[id]) { update(cards[id], runs[id], false); watch(runs[id], runs[id], t); }
    });
  }

  function connect() {
    if (!window.EventSource) { setLive("reconnecting", "NO EVENTSOURCE"); return; }
    var es = new EventSource(API + "/stream");
    es.onopen = function () { setLive("live", "LIVE"); };
    es.addEventListener("snapshot", function (ev) { received(JSON.parse(ev.data), true); });
    es.addEventListener("diff", function (ev) { received(JSON.parse(ev.data), false); });
    es.onerror = function () {
      // EventSource retries by itself (runwatch asks for retry: 1000 ms) and gets a new snapshot
      setLive("reconnecting", es.readyState === 2 ? "OFFLINE" : "RECONNECTING");
      if (es.readyState === 2) { setTimeout(connect, 2000); }
    };
  }
  connect();
  setInterval(tick, 1000);
})();
