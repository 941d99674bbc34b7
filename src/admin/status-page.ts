// The admin listener's "/": one self-contained page (inline CSS, JS and SVG, nothing fetched from
// elsewhere) that renders /status and charts /status/history (the primary's last minutes), both
// refreshed every few seconds. Every chart has its numbers in text beside it; light and dark themes.

export const STATUS_REFRESH_MS = 2000;

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchyard status</title>
<link rel="icon" href="data:,">
<style>
  :root {
    color-scheme: light dark;
    --fg: #1d2330; --bg: #f6f7f9; --card: #fff; --border: #dde1e8; --rule: #eceef2; --muted: #5b6475; --th: #eef1f5;
    --good: #137333; --bad: #b3261e; --warn: #9a6700; --grid: #e3e6ec;
    --c0: #1f6fd1; --c1: #c95a0c; --c2: #11825b; --c3: #9b3bb5; --c4: #8f6d00; --c5: #c2185b; --c6: #00838f; --c7: #5f6b7a;
  }
  @media (prefers-color-scheme: dark) {
    :root {
      --fg: #e3e7ee; --bg: #12161c; --card: #1b2029; --border: #2e3642; --rule: #262d38; --muted: #9aa4b4; --th: #232a35;
      --good: #5fd38d; --bad: #ff7b72; --warn: #e3b341; --grid: #2b323d;
      --c0: #6aaaff; --c1: #ff9e5a; --c2: #4ed39a; --c3: #d08cf0; --c4: #e8c547; --c5: #ff7aa8; --c6: #4fd0dc; --c7: #a9b4c2;
    }
  }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: var(--fg); background: var(--bg); }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
  .meta { color: var(--muted); }
  .tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin-top: 1rem; }
  .tile { background: var(--card); border: 1px solid var(--border); border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
  .tile .v { font-size: 1.5rem; font-variant-numeric: tabular-nums; }
  .tile .k { color: var(--muted); font-size: .8rem; }
  table { border-collapse: collapse; background: var(--card); border: 1px solid var(--border); }
  th, td { padding: .3rem .7rem; border-bottom: 1px solid var(--rule); text-align: left; font-variant-numeric: tabular-nums; }
  th { background: var(--th); font-weight: 600; }
  .up, .ready, .yes, .connected { color: var(--good); }
  .down, .no, .disconnected { color: var(--bad); font-weight: 600; }
  .drain, .maintenance, .unknown { color: var(--warn); }
  #error, #history-error { color: var(--bad); }
  /* Charts: fixed-size SVG, so that redrawing never moves the page. */
  .charts { display: flex; flex-wrap: wrap; gap: .8rem; }
  .chart { margin: 0; background: var(--card); border: 1px solid var(--border); border-radius: 6px; padding: .5rem .7rem .6rem; width: 360px; }
  .chart figcaption { font-weight: 600; margin-bottom: .2rem; }
  .chart svg.plot { display: block; width: 360px; height: 150px; overflow: visible; }
  .plot text { fill: var(--muted); font-size: 10px; font-variant-numeric: tabular-nums; }
  .plot .grid { stroke: var(--grid); stroke-width: 1; }
  .plot .empty { font-size: 12px; }
  .line { fill: none; stroke: var(--c); stroke-width: 1.8; stroke-linejoin: round; stroke-linecap: round; }
  .dot { fill: var(--c); }
  .s0 { --c: var(--c0); } .s1 { --c: var(--c1); stroke-dasharray: 6 3; } .s2 { --c: var(--c2); stroke-dasharray: 2 3; } .s3 { --c: var(--c3); stroke-dasharray: 9 3 2 3; }
  .s4 { --c: var(--c4); } .s5 { --c: var(--c5); stroke-dasharray: 6 3; } .s6 { --c: var(--c6); stroke-dasharray: 2 3; } .s7 { --c: var(--c7); stroke-dasharray: 9 3 2 3; }
  .s-ok { --c: var(--good); } .s-bad { --c: var(--bad); stroke-dasharray: 6 3; }
  .dot { stroke-dasharray: none; }
  .legend { list-style: none; margin: .3rem 0 0; padding: 0; font-size: .85rem; }
  .legend li { display: flex; align-items: center; gap: .4rem; font-variant-numeric: tabular-nums; }
  .legend .name { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .legend .v { min-width: 5.5rem; text-align: right; }
  .legend .peak { color: var(--muted); min-width: 6.5rem; text-align: right; }
  .legend svg { flex: none; }
  .note { color: var(--muted); font-size: .85rem; margin-top: .2rem; }
</style>
</head>
<body>
<h1>Switchyard</h1>
<div class="meta">public port <span id="port">-</span><span id="tls"></span> &middot; <span id="readiness">loading</span> &middot; Redis: <span id="redis">-</span> &middot; updated <span id="updated">never</span> <span id="error"></span></div>
<div class="tiles">
  <div class="tile"><div class="v" id="tunnels">-</div><div class="k">open tunnels</div></div>
  <div class="tile"><div class="v" id="rate-to-backend">-</div><div class="k">messages/s to backends</div></div>
  <div class="tile"><div class="v" id="rate-to-client">-</div><div class="k">messages/s to clients</div></div>
  <div class="tile"><div class="v" id="upgrades-ok">-</div><div class="k">tunnels opened (total)</div></div>
  <div class="tile"><div class="v" id="worker-count">-</div><div class="k">workers listening</div></div>
</div>
<h2 id="history-title">Last minutes</h2>
<div class="charts" id="charts"></div>
<div class="note"><span id="history-note">Loading the balancer's samples.</span> <span id="history-error"></span></div>
<h2>Pools</h2>
<table><thead><tr><th>pool</th><th>algorithm</th><th>hash key</th><th>balance factor</th><th>slow start</th><th>upgrades paced</th><th>DNS discovery</th></tr></thead><tbody id="pools"></tbody></table>
<h2>Backends</h2>
<table><thead><tr><th>pool</th><th>backend</th><th>admin</th><th>health</th><th>tunnels</th><th>opened</th><th>ejections</th><th>max tunnels (fleet)</th><th>slow start</th></tr></thead><tbody id="backends"></tbody></table>
<h2>Workers</h2>
<table><thead><tr><th>slot</th><th>pid</th><th>listening</th><th>restarts</th><th>uptime</th><th>event-loop lag p99</th><th>memory</th><th>connections</th></tr></thead><tbody id="workers"></tbody></table>
<script>
"use strict";
const REFRESH_MS = ${STATUS_REFRESH_MS};
const $ = (id) => document.getElementById(id);
const fmt = (n, digits) => n === null || n === undefined ? "-" : Number(n).toFixed(digits || 0);
const mib = (b) => b === null || b === undefined ? "-" : (b / 1048576).toFixed(1) + " MiB";
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (cls) td.className = cls;
  return td;
}
function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  return tr;
}
function render(s) {
  $("port").textContent = s.listen.port;
  const sni = s.tls ? s.tls.certificates.slice(1) : [];
  const soonest = s.tls ? Math.min(...s.tls.certificates.map((c) => c.daysLeft)) : Infinity;
  $("tls").textContent = s.tls ? " (TLS: " + s.tls.subject + ", " + s.tls.daysLeft + " days left" +
    (sni.length ? "; by SNI: " + sni.map((c) => c.names.join(" ") + " " + c.daysLeft + " days left").join(", ") : "") + ")" : "";
  $("tls").className = soonest < 14 ? "down" : "";
  $("readiness").textContent = s.ready ? "ready" : "not ready: " + s.notReady.join(", ");
  $("readiness").className = s.ready ? "ready" : "down";
  $("redis").textContent = s.redis;
  $("redis").className = s.redis.replace(" ", "-");
  $("tunnels").textContent = s.tunnels;
  $("rate-to-backend").textContent = fmt(s.messagesPerSecond.toBackend, 1);
  $("rate-to-client").textContent = fmt(s.messagesPerSecond.toClient, 1);
  $("upgrades-ok").textContent = s.totals.upgrades.ok || 0;
  $("worker-count").textContent = s.workers.filter((w) => w.listening).length + " / " + s.workers.length;
  $("pools").replaceChildren(...s.pools.map((p) => row([cell(p.name), cell(p.algorithm), cell(p.hashKey || "-"), cell(p.balanceFactor || "-"), cell(p.slowStart ? p.slowStart / 1000 + " s" : "-"),
    cell(p.maxUpgradesPerSecond ? p.maxUpgradesPerSecond + "/s a backend, " + p.paced + " waited" : "-"),
    p.discovery ? cell(p.discovery.dns + ": " + p.discovery.backends + " found" + (p.discovery.draining ? ", " + p.discovery.draining + " draining" : "") + (p.discovery.failing ? "; lookups failing (" + p.discovery.failing + "), last good set kept" : ""), p.discovery.failing ? "down" : "") : cell("-")],
    { "data-pool": p.name })));
  const backends = [];
  for (const p of s.pools) for (const b of p.backends) {
    const ramp = b.slowStartUntil > Date.now() ? "ramping, " + Math.ceil((b.slowStartUntil - Date.now()) / 1000) + " s left" : "-";
    backends.push(row([cell(p.name), cell(b.name + (/^(wss|https):/.test(b.url) ? " (TLS)" : "") + (b.backup ? " (backup)" : "") + (b.discovered ? " (dns)" : "")), cell(b.admin, b.admin), cell(b.health, b.health), cell(b.tunnels), cell(b.tunnelsOpened), cell(b.ejections), cell(b.maxConnections || "-"), cell(ramp, ramp === "-" ? "" : "drain")],
      { "data-pool": p.name, "data-backend": b.name }));
  }
  $("backends").replaceChildren(...backends);
  $("workers").replaceChildren(...s.workers.map((w) => row([cell(w.slot), cell(w.pid === undefined ? "-" : w.pid), cell(w.retiring ? "retiring" : w.listening ? "yes" : "no", w.listening ? "yes" : "no"),
    cell(w.restarts), cell(w.uptimeSeconds + " s"), cell(w.eventLoopLagSeconds === null ? "-" : fmt(w.eventLoopLagSeconds * 1000, 1) + " ms"), cell(mib(w.residentMemoryBytes)),
    cell(w.connections === null ? "-" : w.connections.open + " / " + w.connections.limit + (w.connections.accepting ? "" : " (not accepting: out of descriptors)"), w.connections && !w.connections.accepting ? "down" : "")],
    { "data-slot": String(w.slot) })));
  $("updated").textContent = new Date().toLocaleTimeString();
  $("error").textContent = "";
}
// ---- charts of /status/history: inline SVG, one fixed-size plot per chart, redrawn in place ----
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 360, H = 150, X0 = 40, X1 = W - 8, Y0 = H - 20, Y1 = 8;
function svg(name, attrs, text) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
/** Numbers for axes and legends: 0, 7, 0.25, 1.25, 13, 3.4k (an axis at 2.5 halves to 1.25, not 1.3). */
function short(n) {
  if (n === null || n === undefined) return "-";
  const a = Math.abs(n);
  if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(Number(n.toFixed(a >= 10 ? 0 : 2)));
}
/** A span of time for axes and titles: 60 s, 90 s, 2 min, 10 min. */
function ago(ms) {
  const s = Math.round(ms / 1000);
  return s < 120 ? s + " s" : Math.round(s / 6) / 10 + " min";
}
/**
 * The time the charts span: the history's window, or less while the balancer is younger than that
 * (whole minutes, at least one), so that a fresh balancer's samples are not squeezed into a corner.
 */
function spanOf(h) {
  const windowMs = h.windowSeconds * 1000;
  if (h.at.length === 0) return windowMs;
  return Math.min(windowMs, Math.max(60000, Math.ceil((h.at[h.at.length - 1] - h.at[0]) / 60000) * 60000));
}
/** The y axis's top: 1, 2, 2.5 or 5 times a power of ten, at least 1 (so a trickle stays low). */
function niceTop(v) {
  if (!(v > 1)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5]) if (v <= m * mag) return m * mag;
  return 10 * mag;
}
/** A figure: caption, the plot (its text alternative is the caption and the legend), the legend. */
function makeChart(id, caption) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.id = id;
  const cap = document.createElement("figcaption");
  cap.id = id + "-caption";
  cap.textContent = caption;
  const legend = document.createElement("ul");
  legend.className = "legend";
  legend.id = id + "-legend";
  const plot = svg("svg", { class: "plot", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": cap.id, "aria-describedby": legend.id });
  fig.append(cap, plot, legend);
  return fig;
}
function legendItem(s, latest, peak, unit) {
  const li = document.createElement("li");
  li.dataset.series = s.name;
  const swatch = svg("svg", { width: 22, height: 10, "aria-hidden": "true" });
  swatch.append(svg("line", { class: "line " + s.cls, x1: 1, x2: 21, y1: 5, y2: 5 }));
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = s.label;
  name.title = s.label;
  const now = document.createElement("span");
  now.className = "v";
  now.textContent = short(latest) + unit + " now";
  const top = document.createElement("span");
  top.className = "peak";
  top.textContent = "peak " + short(peak) + unit;
  li.append(swatch, name, now, top);
  return li;
}
/** Draws series ({ name, label, cls, values }, values aligned with h.at; null = no value) over the window. */
function draw(fig, h, series, unit) {
  const at = h.at, spanMs = spanOf(h);
  const end = at.length > 0 ? at[at.length - 1] : 0, start = end - spanMs;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  const top = niceTop(max);
  const x = (t) => X0 + ((t - start) / spanMs) * (X1 - X0);
  const y = (v) => Y0 - (v / top) * (Y0 - Y1);
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    parts.push(svg("line", { class: "grid", x1: X0, x2: X1, y1: y(top * f), y2: y(top * f) }));
    parts.push(svg("text", { x: X0 - 4, y: y(top * f) + 3, "text-anchor": "end" }, short(top * f)));
  }
  parts.push(svg("text", { x: X0, y: H - 4, "text-anchor": "start" }, "-" + ago(spanMs)));
  parts.push(svg("text", { x: (X0 + X1) / 2, y: H - 4, "text-anchor": "middle" }, "-" + ago(spanMs / 2)));
  parts.push(svg("text", { x: X1, y: H - 4, "text-anchor": "end" }, "now"));
  const legend = [];
  for (const s of series) {
    let d = "", pen = false, points = 0, latest = null, peak = null, lastX = 0, lastY = 0;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return void (pen = false);
      lastX = x(at[i]);
      lastY = y(v);
      d += (pen ? "L" : "M") + lastX.toFixed(1) + " " + lastY.toFixed(1);
      pen = true;
      points++;
      latest = v;
      peak = peak === null || v > peak ? v : peak;
    });
    if (points > 0) {
      parts.push(svg("path", { class: "line " + s.cls, d: d, "data-series": s.name, "data-points": points, "data-latest": latest }));
      parts.push(svg("circle", { class: "dot " + s.cls, cx: lastX.toFixed(1), cy: lastY.toFixed(1), r: 2.5 }));
    }
    legend.push(legendItem(s, latest, peak, unit));
  }
  if (at.length === 0) parts.push(svg("text", { class: "empty", x: (X0 + X1) / 2, y: (Y0 + Y1) / 2, "text-anchor": "middle" }, "no samples yet"));
  fig.querySelector("svg.plot").replaceChildren(...parts);
  fig.querySelector(".legend").replaceChildren(...legend);
}
// The pool-wide charts exist from the start, so that the page does not jump when data arrives.
const charts = { messages: makeChart("chart-messages", "Messages/s"), upgrades: makeChart("chart-upgrades", "Upgrades/s: ok and refused") };
const refusals = document.createElement("div");
refusals.className = "note";
refusals.id = "refusals";
charts.upgrades.append(refusals);
$("charts").append(charts.messages, charts.upgrades);
/** Pool name → its "tunnels by backend" chart. */
const poolCharts = new Map();
let poolChartIds = 0;
function renderHistory(h) {
  $("history-title").textContent = "Last " + ago(spanOf(h));
  $("history-note").textContent = "Sampled by the balancer every " + h.intervalSeconds + " s (" + h.at.length + " samples).";
  draw(charts.messages, h, [
    { name: "to_backend", label: "to backends", cls: "s0", values: h.messagesPerSecond.toBackend },
    { name: "to_client", label: "to clients", cls: "s1", values: h.messagesPerSecond.toClient },
  ], "/s");
  draw(charts.upgrades, h, [
    { name: "ok", label: "ok", cls: "s-ok", values: h.upgradesPerSecond.ok },
    { name: "refused", label: "refused", cls: "s-bad", values: h.upgradesPerSecond.refused },
  ], "/s");
  const byPool = new Map();
  for (const b of h.backends) {
    if (!byPool.has(b.pool)) byPool.set(b.pool, []);
    byPool.get(b.pool).push(b);
  }
  for (const [pool, fig] of poolCharts) if (!byPool.has(pool)) { fig.remove(); poolCharts.delete(pool); }
  for (const [pool, backends] of byPool) {
    let fig = poolCharts.get(pool);
    if (!fig) {
      fig = makeChart("chart-pool-" + ++poolChartIds, "Open tunnels by backend: " + pool);
      fig.dataset.pool = pool;
      $("charts").append(fig);
      poolCharts.set(pool, fig);
    }
    draw(fig, h, backends.map((b, i) => ({ name: b.backend, label: b.backend, cls: "s" + (i % 8), values: b.tunnels })), "");
  }
}
function renderRefusals(upgrades) {
  const refused = Object.entries(upgrades).filter(([outcome, n]) => outcome !== "ok" && n > 0).map(([outcome, n]) => outcome + " " + n);
  refusals.textContent = "Refused in total: " + (refused.length > 0 ? refused.join(", ") : "none");
}

async function refreshStatus() {
  try {
    const res = await fetch("status", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const s = await res.json();
    render(s);
    renderRefusals(s.totals.upgrades);
  } catch (err) {
    $("error").textContent = "(refresh failed: " + err.message + ")";
  }
}
async function refreshHistory() {
  try {
    const res = await fetch("status/history", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    renderHistory(await res.json());
    $("history-error").textContent = "";
  } catch (err) {
    $("history-error").textContent = "(history failed: " + err.message + ")";
  }
}
async function refresh() {
  await Promise.all([refreshStatus(), refreshHistory()]);
  setTimeout(refresh, REFRESH_MS);
}
refresh();
</script>
</body>
</html>
`;
