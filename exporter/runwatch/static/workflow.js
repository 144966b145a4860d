/* runwatch status page: the workflow view of a run with agents.
 *
 *   window.runwatchWorkflow.render(containerElement, run, apiBase)
 *
 * run is a run object of GET /api/runs (agents with their executions, data_flow); the page calls
 * render on every update of the run, and it only redraws what changed. It draws, in inline SVG:
 * the agents as nodes coloured by state with the data flow between them as edges labelled with the
 * bytes passed; a timeline of the agents' executions with their durations, the running ones marked;
 * and, for the agent clicked, an inspector fed by GET {apiBase}/api/runs/{run}/agents/{agent}: its
 * events, output size, error and its input and output payloads.
 *
 * Plain JavaScript, no library, no build step. Everything a run says goes into the page through
 * textContent and attributes only (never as HTML).
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var MAX_NODES = 60;        // agents drawn in the graph and the timeline; the rest are counted
  var NODE_W = 112, NODE_H = 40, COL_GAP = 66, ROW_GAP = 30, PAD = 14, LOOP = 46;
  var TL_LABEL = 112, TL_W = 640, TL_ROW = 22, TL_BAR = 13, TL_AXIS = 20;
  var views = new WeakMap();   // container -> its view

  // its styles: static/workflow.css, linked once (the page's CSP allows stylesheets from runwatch only)

  function injectStyle() {
    if (document.getElementById("rw-wf-style")) return;
    var st = document.createElement("link");
    st.id = "rw-wf-style";
    st.rel = "stylesheet";
    st.href = "workflow.css";
    (document.head || document.documentElement).appendChild(st);
  }

  // ------------------------------------------------------------------ small helpers

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function s(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function title(e, text) { e.appendChild(s("title", null, text)); return e; }
  function num(x) { return typeof x === "number" && isFinite(x); }

  function fmtBytes(n) {
    if (!num(n)) return "–";
    var u = ["B", "kB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + u[i];
  }
  function fmtDur(sec) {
    if (!num(sec)) return "–";
    if (sec < 0) sec = 0;
    if (sec < 10) return sec.toFixed(1) + " s";
    if (sec < 60) return Math.round(sec) + " s";
    var m = Math.floor(sec / 60), hr = Math.floor(m / 60);
    if (hr) return hr + " h " + (m % 60) + " min";
    return m + " min " + Math.round(sec % 60) + " s";
  }
  function fmtClock(ts) {
    if (!num(ts)) return "–";
    var d = new Date(ts * 1000);
    function p(x) { return (x < 10 ? "0" : "") + x; }
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function plural(n, what) { return n + " " + what + (n === 1 ? "" : "s"); }
  function short(name, n) { return name.length <= n ? name : name.slice(0, n - 1) + "…"; }

  function nowFor(run) {      // the browser's clock, but never before the run's last known time
    var t = Date.now() / 1000;
    [run.last_line_ts, run.last_progress_ts, run.start_ts].forEach(function (x) { if (num(x) && x > t) t = x; });
    (run.agents || []).forEach(function (a) {
      [a.started_ts, a.ended_ts].forEach(function (x) { if (num(x) && x > t) t = x; });
    });
    return t;
  }
  function runActive(run) { return run.state === "running" || run.state === "pending"; }

  // ------------------------------------------------------------------ layout

  /* Agents in the order they first started (those never started last, by name). A depth-first
   * walk along the data flows, from the agents in that order, breaks cycles: a flow to an agent
   * still on the walk's path goes back (drawn as an arc over the nodes, as a review loop is),
   * every other flow goes forward. Each agent stands one column right of its furthest forward
   * predecessor; within a column, near the mean row of its predecessors. */
  function layout(run) {
    var agents = (run.agents || []).slice();
    function first(a) {
      var ex = a.executions || [];
      for (var i = 0; i < ex.length; i++) { if (num(ex[i].started_ts)) return ex[i].started_ts; }
      return num(a.started_ts) ? a.started_ts : num(a.ended_ts) ? a.ended_ts : Infinity;
    }
    agents.sort(function (a, b) {
      var fa = first(a), fb = first(b);
      if (fa !== fb) return fa < fb ? -1 : 1;
      return a.agent_id < b.agent_id ? -1 : a.agent_id > b.agent_id ? 1 : 0;
    });
    var hidden = Math.max(0, agents.length - MAX_NODES);
    agents = agents.slice(0, MAX_NODES);
    var rank = {}, byId = {}, out = {};
    agents.forEach(function (a, i) { rank[a.agent_id] = i; byId[a.agent_id] = a; out[a.agent_id] = []; });
    var flows = (run.data_flow || []).filter(function (f) { return f.from_agent in rank && f.to_agent in rank; });
    flows.forEach(function (f) { if (f.from_agent !== f.to_agent) out[f.from_agent].push(f.to_agent); });
    Object.keys(out).forEach(function (k) { out[k].sort(function (x, y) { return rank[x] - rank[y]; }); });
    var seen = {}, order = [], back = {};
    function visit(id) {                       // at most MAX_NODES deep
      seen[id] = 1;
      out[id].forEach(function (t) {
        if (seen[t] === 1) back[id + "\n" + t] = true;
        else if (!seen[t]) visit(t);
      });
      seen[id] = 2;
      order.push(id);
    }
    agents.forEach(function (a) { if (!seen[a.agent_id]) visit(a.agent_id); });
    order.reverse();                           // every forward flow goes from earlier to later here
    function isBack(f) { return f.from_agent === f.to_agent || !!back[f.from_agent + "\n" + f.to_agent]; }
    var col = {}, preds = {};
    agents.forEach(function (a) { col[a.agent_id] = 0; preds[a.agent_id] = []; });
    order.forEach(function (id) {
      out[id].forEach(function (t) {
        if (back[id + "\n" + t]) return;
        col[t] = Math.max(col[t], col[id] + 1);
        preds[t].push(id);
      });
    });
    var cols = [], row = {};
    agents.forEach(function (a) { var c = col[a.agent_id]; (cols[c] = cols[c] || []).push(a.agent_id); });
    for (var c = 0; c < cols.length; c++) {
      if (!cols[c]) { cols[c] = []; continue; }
      if (c) {
        var bary = {};
        cols[c].forEach(function (id) {
          var p = preds[id].filter(function (x) { return x in row; });
          bary[id] = p.length ? p.reduce(function (sum, x) { return sum + row[x]; }, 0) / p.length : Infinity;
        });
        cols[c].sort(function (x, y) { return bary[x] !== bary[y] ? (bary[x] < bary[y] ? -1 : 1) : rank[x] - rank[y]; });
      }
      cols[c].forEach(function (id, r) { row[id] = r; });
    }
    var hasBack = flows.some(isBack);
    var top = PAD + (hasBack ? LOOP : 0);
    var rows = 0;
    cols.forEach(function (ids) { rows = Math.max(rows, ids.length); });
    var gap = rows > 6 ? 12 : ROW_GAP;        // a tall column packs closer
    var pos = {};
    cols.forEach(function (ids, c) {
      ids.forEach(function (id, r) { pos[id] = {x: PAD + c * (NODE_W + COL_GAP), y: top + r * (NODE_H + gap)}; });
    });
    // where each forward flow leaves and enters a node: spread over the side, in the order of the other end
    var ports = {}, outs = {}, ins = {};
    flows.forEach(function (f) {
      if (isBack(f)) return;
      (outs[f.from_agent] = outs[f.from_agent] || []).push(f);
      (ins[f.to_agent] = ins[f.to_agent] || []).push(f);
    });
    function spread(groups, end, other) {
      Object.keys(groups).forEach(function (id) {
        var g = groups[id];
        g.sort(function (x, y) { return pos[x[other]].y - pos[y[other]].y; });
        g.forEach(function (f, i) {
          var key = f.from_agent + "\n" + f.to_agent;
          ports[key] = ports[key] || {};
          ports[key][end] = pos[id].y + NODE_H * (0.2 + 0.6 * (i + 1) / (g.length + 1));
        });
      });
    }
    spread(outs, "sy", "to_agent");
    spread(ins, "ty", "from_agent");
    var width = PAD * 2 + Math.max(1, cols.length) * NODE_W + Math.max(0, cols.length - 1) * COL_GAP;
    var height = top + Math.max(1, rows) * NODE_H + Math.max(0, rows - 1) * gap + PAD;
    return {agents: agents, byId: byId, rank: rank, flows: flows, pos: pos, width: width, height: height,
            hidden: hidden, isBack: isBack, ports: ports,
            fanOut: function (id) { return (outs[id] || []).length; }, fanIn: function (id) { return (ins[id] || []).length; }};
  }

  // ------------------------------------------------------------------ the graph

  function drawGraph(v, run, lay) {
    var svg = s("svg", {viewBox: "0 0 " + lay.width + " " + lay.height, role: "img",
                        "aria-label": "workflow graph: " + lay.agents.length + " agents, " + lay.flows.length + " data flows"});
    svg.style.minWidth = Math.round(lay.width * 0.78) + "px";     // narrower: it scrolls, text stays legible
    svg.style.maxWidth = Math.round(lay.width * 1.2) + "px";
    var defs = s("defs");
    var mk = s("marker", {id: v.uid + "-arr", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                          orient: "auto-start-reverse"});
    mk.appendChild(s("path", {d: "M0,0 L10,5 L0,10 z", "class": "arrow"}));
    defs.appendChild(mk);
    svg.appendChild(defs);
    var edges = s("g", {"class": "edges"}), labels = s("g", {"class": "labels"}), nodes = s("g", {"class": "nodes"});
    lay.flows.forEach(function (f) { drawEdge(v, lay, f, edges, labels); });
    lay.agents.forEach(function (a) { nodes.appendChild(drawNode(v, lay, a)); });
    svg.appendChild(edges); svg.appendChild(nodes); svg.appendChild(labels);
    v.graph.textContent = "";
    v.graph.appendChild(svg);
  }

  function drawEdge(v, lay, f, edges, labels) {
    var a = lay.pos[f.from_agent], b = lay.pos[f.to_agent];
    var back = lay.isBack(f);
    var d, lx, ly;
    if (f.from_agent === f.to_agent) {            // an agent feeding itself: a small loop on its top
      var x0 = a.x + NODE_W * 0.65, y0 = a.y;
      d = "M" + x0 + "," + y0 + " C" + (x0 - 6) + "," + (y0 - LOOP * 0.8) + " " + (x0 + 34) + "," + (y0 - LOOP * 0.8) +
          " " + (x0 + 24) + "," + y0;
      lx = x0 + 14; ly = y0 - LOOP * 0.62;
    } else if (back) {                            // back to an earlier agent: an arc over the nodes
      var x1 = a.x + NODE_W / 2, x2 = b.x + NODE_W / 2, yt = Math.min(a.y, b.y);
      var up = yt - LOOP + 6;
      d = "M" + (x1 - 8) + "," + a.y + " C" + (x1 - 8) + "," + up + " " + (x2 + 8) + "," + up + " " + (x2 + 8) + "," + b.y;
      lx = (x1 + x2) / 2; ly = yt - LOOP * 0.72 + 6;
    } else {
      var port = lay.ports[f.from_agent + "\n" + f.to_agent] || {};
      var sx = a.x + NODE_W, sy = num(port.sy) ? port.sy : a.y + NODE_H / 2, tx = b.x;
      var ty = num(port.ty) ? port.ty : b.y + NODE_H / 2, dx = Math.max(24, (tx - sx) / 2);
      d = "M" + sx + "," + sy + " C" + (sx + dx) + "," + sy + " " + (tx - dx) + "," + ty + " " + tx + "," + ty;
      // the label sits by the end that has fewer flows (on the level part of the curve there),
      // so each of a fan's labels is beside its own node; a flow alone: in the middle
      var fo = lay.fanOut(f.from_agent), fi = lay.fanIn(f.to_agent), lw = fmtBytes(f.bytes).length * 6 + 8;
      if (fo > fi) { lx = tx - lw / 2 - 9; ly = ty; }
      else if (fi > fo) { lx = sx + lw / 2 + 3; ly = sy; }
      else { lx = (sx + tx) / 2; ly = (sy + ty) / 2; }
    }
    var label = fmtBytes(f.bytes);
    var g = s("g", {"class": "edge" + (back ? " back" : ""), "data-from": f.from_agent, "data-to": f.to_agent,
                    "data-bytes": f.bytes});
    g.appendChild(s("path", {d: d, "marker-end": "url(#" + v.uid + "-arr)"}));
    title(g, f.from_agent + " → " + f.to_agent + ": " + (num(f.bytes) ? Math.round(f.bytes).toLocaleString("en") : "?") +
              " bytes");
    edges.appendChild(g);
    var lg = s("g", {"class": "edge", "data-from": f.from_agent, "data-to": f.to_agent});
    var w = label.length * 6 + 8;
    lg.appendChild(s("rect", {"class": "lbg", x: lx - w / 2, y: ly - 7.5, width: w, height: 15, rx: 4}));
    lg.appendChild(s("text", {"class": "elabel", x: lx, y: ly + 3.5, "text-anchor": "middle"}, label));
    title(lg, f.from_agent + " → " + f.to_agent);
    labels.appendChild(lg);
  }

  function drawNode(v, lay, a) {
    var p = lay.pos[a.agent_id];
    var sel = v.selected === a.agent_id;
    var g = s("g", {"class": "node " + a.state + (sel ? " selected" : ""), "data-agent": a.agent_id,
                    "data-state": a.state, tabindex: 0, role: "button",
                    transform: "translate(" + p.x + "," + p.y + ")",
                    "aria-label": "agent " + a.agent_id + ", " + a.state + "; show its details"});
    g.appendChild(s("rect", {width: NODE_W, height: NODE_H, rx: 8}));
    g.appendChild(s("text", {"class": "name", x: NODE_W / 2, y: 17, "text-anchor": "middle"}, short(a.agent_id, 14)));
    var sub = a.state;
    if (a.state !== "running" && num(a.duration)) sub += " · " + fmtDur(a.duration);
    g.appendChild(s("text", {"class": "sub", x: NODE_W / 2, y: 32, "text-anchor": "middle"}, sub));
    title(g, a.agent_id + ": " + a.state + (a.error ? " — " + a.error : ""));
    g.addEventListener("click", function () { select(v, a.agent_id); });
    g.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(v, a.agent_id); }
    });
    return g;
  }

  // ------------------------------------------------------------------ the timeline

  function drawTimeline(v, run, lay, now) {
    var rowsOf = lay.agents.filter(function (a) { return (a.executions || []).length; });
    if (!rowsOf.length) { v.tl.textContent = ""; v.tl.appendChild(h("div", "rw-wf-title", "No agent has run yet.")); return; }
    var t0 = Infinity, t1 = -Infinity;
    rowsOf.forEach(function (a) {
      a.executions.forEach(function (ex) {
        if (num(ex.started_ts)) t0 = Math.min(t0, ex.started_ts);
        if (num(ex.ended_ts)) { t0 = Math.min(t0, ex.ended_ts); t1 = Math.max(t1, ex.ended_ts); }
      });
    });
    if (num(run.start_ts)) t0 = Math.min(t0, run.start_ts);
    var active = runActive(run);
    var end = active ? now : (num(run.end_ts) ? run.end_ts : now);
    t1 = Math.max(t1, end);
    if (!(t1 > t0)) t1 = t0 + 1;
    var span = t1 - t0, W = TL_W - TL_LABEL - 100;
    function x(t) { return TL_LABEL + (t - t0) / span * W; }
    var H = TL_AXIS + rowsOf.length * TL_ROW + 4;
    var svg = s("svg", {viewBox: "0 0 " + TL_W + " " + H, role: "img",
                        "aria-label": "timeline of agent executions"});
    svg.style.minWidth = Math.round(TL_W * 0.72) + "px";
    svg.style.maxWidth = Math.round(TL_W * 1.25) + "px";
    var axis = s("g", {"class": "tl-axis"});
    var step = niceStep(span / 6);
    for (var t = 0; t <= span + 1e-9; t += step) {
      axis.appendChild(s("line", {x1: x(t0 + t), x2: x(t0 + t), y1: TL_AXIS - 4, y2: H}));
      axis.appendChild(s("text", {x: x(t0 + t), y: TL_AXIS - 8, "text-anchor": "middle"}, fmtTick(t)));
    }
    svg.appendChild(axis);
    rowsOf.forEach(function (a, i) {
      var y = TL_AXIS + i * TL_ROW;
      var row = s("g", {"class": "tl-row" + (v.selected === a.agent_id ? " selected" : ""), "data-agent": a.agent_id});
      row.appendChild(s("rect", {"class": "tl-lane", x: TL_LABEL, y: y + 2, width: W, height: TL_ROW - 4, rx: 3}));
      row.appendChild(s("text", {"class": "tl-name", x: TL_LABEL - 8, y: y + TL_ROW / 2 + 4, "text-anchor": "end"},
                        short(a.agent_id, 16)));
      var ex = a.executions;
      var skipped = (a.executions_total || ex.length) - ex.length;
      if (skipped > 0) {
        title(row, a.agent_id + ": " + skipped + " earlier executions not kept");
      }
      ex.forEach(function (e, k) {
        var open = !num(e.ended_ts);
        var running = open && e.state === "running" && active;
        var st = open ? (running ? "running" : "open") : e.state;
        var start = num(e.started_ts) ? e.started_ts : e.ended_ts;
        var stop = open ? end : e.ended_ts;
        var dur = num(e.duration) ? e.duration : (num(e.started_ts) ? stop - e.started_ts : null);
        var bx = x(start), bw = Math.max(3, x(stop) - bx);
        var bar = s("rect", {"class": "exec " + st, x: bx, y: y + (TL_ROW - TL_BAR) / 2, width: bw, height: TL_BAR,
                             rx: 3, "data-agent": a.agent_id, "data-state": st, "data-index": k,
                             "data-running": running ? "true" : "false"});
        title(bar, a.agent_id + " · " + (running ? "running for " : st + " after ") + fmtDur(dur) +
                   " · started " + fmtClock(e.started_ts) + (e.error ? " · " + e.error : ""));
        row.appendChild(bar);
        var last = k === ex.length - 1;
        var label = running ? "▶ running " + fmtDur(dur) : fmtDur(dur);
        var lw = label.length * 5.6 + 6, ty = y + TL_ROW / 2 + 3.5, cls = "tl-dur" + (running ? " running" : "");
        if (last && bx + bw + 4 + lw <= TL_W) {              // after the bar
          row.appendChild(s("text", {"class": cls, x: bx + bw + 4, y: ty}, label));
        } else if (bw > lw + 4) {                            // inside it
          row.appendChild(s("text", {"class": cls + " inside", x: last ? bx + bw - 4 : bx + 4, y: ty,
                                     "text-anchor": last ? "end" : "start"}, label));
        } else if (last && bx - lw - 4 >= TL_LABEL) {        // before it
          row.appendChild(s("text", {"class": cls, x: bx - 4, y: ty, "text-anchor": "end"}, label));
        }
      });
      row.addEventListener("click", function () { select(v, a.agent_id); });
      svg.appendChild(row);
    });
    if (active) svg.appendChild(s("line", {"class": "tl-now", x1: x(end), x2: x(end), y1: TL_AXIS - 4, y2: H}));
    v.tl.textContent = "";
    v.tl.appendChild(svg);
  }

  function niceStep(raw) {
    var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];
    for (var i = 0; i < steps.length; i++) { if (steps[i] >= raw) return steps[i]; }
    return Math.ceil(raw / 86400) * 86400;
  }
  function fmtTick(t) {
    if (t < 60) return Math.round(t) + " s";
    if (t < 3600) return (t % 60 ? (t / 60).toFixed(1) : t / 60) + " min";
    return (t % 3600 ? (t / 3600).toFixed(1) : t / 3600) + " h";
  }

  // ------------------------------------------------------------------ the inspector

  function select(v, agentId) {
    if (v.selected !== agentId) {
      v.selected = agentId;
      v.detail = null;
      v.detailSig = null;
      v.graphSig = v.tlSig = null;      // redraw the selection marks
    }
    render(v.container, v.run, v.apiBase);
    v.insp.scrollIntoView({block: "nearest"});
  }

  function closeInspector(v) {
    v.selected = null; v.detail = null; v.detailSig = null; v.graphSig = v.tlSig = null;
    render(v.container, v.run, v.apiBase);
  }

  function agentSig(run, id) {
    var a = null;
    (run.agents || []).forEach(function (x) { if (x.agent_id === id) a = x; });
    var flows = (run.data_flow || []).filter(function (f) { return f.from_agent === id || f.to_agent === id; });
    return JSON.stringify([run.run_id, a, flows]);
  }

  function updateInspector(v, run) {
    if (!v.selected) { v.insp.hidden = true; return; }
    v.insp.hidden = false;
    var sig = agentSig(run, v.selected);
    if (sig !== v.detailSig) {
      v.detailSig = sig;
      fetchDetail(v);
    }
    if (!v.detail) drawInspector(v, null);
  }

  function fetchDetail(v) {
    if (v.inflight) { v.again = true; return; }
    var id = v.selected, rid = v.run.run_id;
    v.inflight = true; v.again = false;
    var url = v.apiBase + "/api/runs/" + encodeURIComponent(rid) + "/agents/" + encodeURIComponent(id);
    fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (res) { return res.json().then(function (j) { return {ok: res.ok, status: res.status, body: j}; }); })
      .then(function (r) {
        if (v.selected !== id || v.run.run_id !== rid) return;
        v.detail = r.ok ? r.body : {missing: true, error: (r.body && r.body.error) || ("HTTP " + r.status)};
        drawInspector(v, v.detail);
      })
      .catch(function (e) {
        if (v.selected === id) { v.detail = {missing: true, error: String(e)}; drawInspector(v, v.detail); }
      })
      .then(function () {
        v.inflight = false;
        if (v.again && v.selected) fetchDetail(v);
      });
  }

  function fact(dl, label, value, cls) {
    var d = h("div"); d.appendChild(h("dt", "", label)); var dd = h("dd", cls || "", value); d.appendChild(dd);
    dl.appendChild(d); return dd;
  }

  function payloadBlock(which, p) {
    var box = h("div");
    box.appendChild(h("h4", "", which));
    if (!p) { box.appendChild(h("div", "note", "none reported")); return box; }
    var text = p.text, pretty = text;
    if (!p.truncated) {
      try { var j = JSON.parse(text); if (j !== null && typeof j === "object") pretty = prettyJSON(j, ""); }
      catch (e) { /* not JSON: shown as sent */ }
    }
    var pre = h("pre", "rw-payload", pretty);
    pre.dataset.which = which;
    box.appendChild(pre);
    var note = fmtBytes(p.bytes) + " · from " + p.event + " at " + fmtClock(p.ts);
    box.appendChild(h("div", "note", note));
    if (p.truncated) {
      box.appendChild(h("div", "cut", "cut: " + fmtBytes(p.kept_bytes) + " kept of " + fmtBytes(p.bytes) +
                                      " (" + p.cut_bytes.toLocaleString("en") + " bytes not kept)"));
    }
    return box;
  }

  /* JSON indented by two, but what fits in 60 characters stays on one line, spaced */
  function flatJSON(x) {
    if (x === null || typeof x !== "object") return JSON.stringify(x);
    if (Array.isArray(x)) return "[" + x.map(flatJSON).join(", ") + "]";
    return "{" + Object.keys(x).map(function (k) { return JSON.stringify(k) + ": " + flatJSON(x[k]); }).join(", ") + "}";
  }
  function prettyJSON(x, ind) {
    var flat = flatJSON(x);
    if (x === null || typeof x !== "object" || flat.length + ind.length <= 60) return flat;
    var inner = ind + "  ", parts;
    if (Array.isArray(x)) {
      parts = x.map(function (y) { return inner + prettyJSON(y, inner); });
      return "[\n" + parts.join(",\n") + "\n" + ind + "]";
    }
    parts = Object.keys(x).map(function (k) { return inner + JSON.stringify(k) + ": " + prettyJSON(x[k], inner); });
    return "{\n" + parts.join(",\n") + "\n" + ind + "}";
  }

  function eventText(e) {
    if (e.type === "data_flow") return e.from_agent + " → " + e.to_agent + " · " + fmtBytes(e.data_size);
    var parts = [];
    Object.keys(e).forEach(function (k) {
      if (k === "ts" || k === "type") return;
      var val = e[k];
      if (k === "duration") val = fmtDur(val);
      else if (k === "output_size" || /_bytes$/.test(k)) val = fmtBytes(val);
      parts.push(k.replace(/_/g, " ") + " " + val);
    });
    return parts.join(" · ");
  }

  function drawInspector(v, d) {
    var box = v.insp, id = v.selected;
    box.textContent = "";
    box.dataset.agent = id;
    var head = h("div", "ihead");
    head.appendChild(h("b", "", id));
    var state = d && !d.missing ? d.state : null;
    if (state) head.appendChild(h("span", "istate " + state, state));
    var close = h("button", "", "Close"); close.type = "button";
    close.addEventListener("click", function () { closeInspector(v); });
    head.appendChild(close);
    box.appendChild(head);
    if (!d) { box.appendChild(h("div", "note", "Loading…")); box.dataset.loaded = "false"; return; }
    if (d.missing) { box.appendChild(h("div", "note", d.error)); box.dataset.loaded = "missing"; return; }
    var dl = h("dl");
    var lastEx = (d.executions || [])[d.executions.length - 1];
    fact(dl, "Duration", d.state === "running" && lastEx && num(lastEx.started_ts) ?
         "running " + fmtDur(nowFor(v.run) - lastEx.started_ts) : fmtDur(d.duration));
    fact(dl, "Output size", fmtBytes(d.output_size)).className = "rw-osize";
    fact(dl, "Executions", String(d.executions_total || 0));
    var sent = 0, got = 0;
    (d.flows_out || []).forEach(function (f) { sent += f.bytes; });
    (d.flows_in || []).forEach(function (f) { got += f.bytes; });
    fact(dl, "Data in / out", fmtBytes(got) + " / " + fmtBytes(sent));
    box.appendChild(dl);
    if (d.error) {
      box.appendChild(h("div", "rw-err", "error: " + d.error));
    } else {
      var failed = (d.executions || []).filter(function (e) { return e.state === "failed"; });
      if (failed.length) {
        var f = failed[failed.length - 1];
        box.appendChild(h("div", "rw-err earlier", "earlier failure" + (num(f.ended_ts) ? " at " + fmtClock(f.ended_ts) : "") +
                                                   ": " + (f.error || "no error text")));
      }
    }
    var pay = h("div", "pay");
    pay.appendChild(payloadBlock("input", d.input));
    pay.appendChild(payloadBlock("output", d.output));
    box.appendChild(pay);
    box.appendChild(h("h4", "", "Events" + (d.events_total > d.events.length ?
                                            " (last " + d.events.length + " of " + d.events_total + ")" : "")));
    var ol = h("ol", "rw-events");
    var t0 = num(v.run.start_ts) ? v.run.start_ts : null;
    (d.events || []).forEach(function (e) {
      var li = h("li", e.type);
      li.appendChild(h("span", "t", (t0 !== null ? "+" + fmtDur(e.ts - t0) : fmtClock(e.ts)) + "  "));
      li.appendChild(h("span", "ty", e.type));
      var txt = eventText(e);
      if (txt) li.appendChild(document.createTextNode(" · " + txt));
      li.title = new Date(e.ts * 1000).toISOString();
      ol.appendChild(li);
    });
    if (!(d.events || []).length) ol.appendChild(h("li", "", "no events kept"));
    box.appendChild(ol);
    box.dataset.loaded = "true";
  }

  // ------------------------------------------------------------------ render

  var seq = 0;
  function create(container) {
    injectStyle();
    container.textContent = "";
    var root = h("div", "rw-wf");
    var v = {container: container, uid: "rwwf" + (++seq), selected: null, detail: null, detailSig: null,
             graphSig: null, tlSig: null, inflight: false, again: false};
    v.title = h("div", "rw-wf-title");
    v.graph = h("div", "rw-wf-graph");
    v.tl = h("div", "rw-wf-tl");
    v.insp = h("div", "rw-wf-insp"); v.insp.hidden = true;
    v.insp.setAttribute("aria-live", "polite");
    root.appendChild(v.title); root.appendChild(v.graph); root.appendChild(v.tl); root.appendChild(v.insp);
    container.appendChild(root);
    return v;
  }

  function render(container, run, apiBase) {
    if (!container || !run) return;
    var v = views.get(container);
    if (!v) { v = create(container); views.set(container, v); }
    if (v.run && v.run.run_id !== run.run_id) { v.selected = null; v.detail = null; v.detailSig = null; }
    v.run = run;
    v.apiBase = (apiBase || "").replace(/\/+$/, "");
    var lay = layout(run);
    var sig = JSON.stringify([run.agents, run.data_flow, v.selected]);
    if (sig !== v.graphSig) {
      drawGraph(v, run, lay);
      v.graphSig = sig;
      v.title.textContent = "";
      v.title.appendChild(h("b", "", "Workflow"));
      v.title.appendChild(document.createTextNode(
        plural(lay.agents.length, "agent") + " · " + plural(lay.flows.length, "data flow") +
        (lay.hidden ? " · " + lay.hidden + " more agents not drawn" : "") + " · click an agent for its details"));
    }
    var running = runActive(run) && (run.agents || []).some(function (a) { return a.state === "running"; });
    var tsig = JSON.stringify([sig, run.state, run.start_ts, run.end_ts]);
    if (tsig !== v.tlSig || running) {       // a running execution grows with the clock
      drawTimeline(v, run, lay, nowFor(run));
      v.tlSig = tsig;
    }
    updateInspector(v, run);
  }

  window.runwatchWorkflow = {render: render};
})();
