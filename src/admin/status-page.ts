// The admin listener's "/": one self-contained page (inline CSS and JS, nothing fetched from
// elsewhere) that renders /status and refreshes it every few seconds.

export const STATUS_REFRESH_MS = 2000;

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchyard status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
  .meta { color: #5b6475; }
  .tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin-top: 1rem; }
  .tile { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
  .tile .v { font-size: 1.5rem; font-variant-numeric: tabular-nums; }
  .tile .k { color: #5b6475; font-size: .8rem; }
  table { border-collapse: collapse; background: #fff; border: 1px solid #dde1e8; }
  th, td { padding: .3rem .7rem; border-bottom: 1px solid #eceef2; text-align: left; font-variant-numeric: tabular-nums; }
  th { background: #eef1f5; font-weight: 600; }
  .up, .ready, .yes, .connected { color: #137333; }
  .down, .no, .disconnected { color: #b3261e; font-weight: 600; }
  .drain, .maintenance, .unknown { color: #9a6700; }
  #error { color: #b3261e; }
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
<h2>Pools</h2>
<table><thead><tr><th>pool</th><th>algorithm</th><th>hash key</th><th>balance factor</th><th>slow start</th></tr></thead><tbody id="pools"></tbody></table>
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
  $("tls").textContent = s.tls ? " (TLS: " + s.tls.subject + ", " + s.tls.daysLeft + " days left)" : "";
  $("tls").className = s.tls && s.tls.daysLeft < 14 ? "down" : "";
  $("readiness").textContent = s.ready ? "ready" : "not ready: " + s.notReady.join(", ");
  $("readiness").className = s.ready ? "ready" : "down";
  $("redis").textContent = s.redis;
  $("redis").className = s.redis.replace(" ", "-");
  $("tunnels").textContent = s.tunnels;
  $("rate-to-backend").textContent = fmt(s.messagesPerSecond.toBackend, 1);
  $("rate-to-client").textContent = fmt(s.messagesPerSecond.toClient, 1);
  $("upgrades-ok").textContent = s.totals.upgrades.ok || 0;
  $("worker-count").textContent = s.workers.filter((w) => w.listening).length + " / " + s.workers.length;
  $("pools").replaceChildren(...s.pools.map((p) => row([cell(p.name), cell(p.algorithm), cell(p.hashKey || "-"), cell(p.balanceFactor || "-"), cell(p.slowStart ? p.slowStart / 1000 + " s" : "-")],
    { "data-pool": p.name })));
  const backends = [];
  for (const p of s.pools) for (const b of p.backends) {
    const ramp = b.slowStartUntil > Date.now() ? "ramping, " + Math.ceil((b.slowStartUntil - Date.now()) / 1000) + " s left" : "-";
    backends.push(row([cell(p.name), cell(b.backup ? b.name + " (backup)" : b.name), cell(b.admin, b.admin), cell(b.health, b.health), cell(b.tunnels), cell(b.tunnelsOpened), cell(b.ejections), cell(b.maxConnections || "-"), cell(ramp, ramp === "-" ? "" : "drain")],
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
async function refresh() {
  try {
    const res = await fetch("status", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
  } catch (err) {
    $("error").textContent = "(refresh failed: " + err.message + ")";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
</script>
</body>
</html>
`;
