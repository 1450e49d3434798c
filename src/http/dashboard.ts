// The live dashboard: one self-contained HTML page (no external scripts) drawing canvas charts from /events; in a
// fleet, a second view draws the fleet's sum (/events?scope=fleet) with a table of its instances.
import type { Protocol } from "../config/schema.ts";
import { chartsFor } from "./dashboard-charts.ts";
import { UPSTREAM_PANEL, UPSTREAM_PANEL_STYLE, upstreamRowsHtml } from "./dashboard-upstreams.ts";

const PAGE_SCRIPT = String.raw`
"use strict";
const CHARTS = __CHARTS__;
const HISTORY_POINTS = 120;
const history = new Map(CHARTS.map((chart) => [chart.id, chart.series.map(() => [])]));
/** Wall-clock time of each point (ms), shared by every chart: one snapshot adds one point to each. */
const times = [];

function read(snapshot, path) {
  let value = snapshot;
  for (const key of path.split(".")) value = value == null ? undefined : value[key];
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function format(value, unit) {
  if (unit === "micros") {
    if (value < 1000) return value.toFixed(0) + " \u00b5s";
    if (value < 1e6) return (value / 1000).toFixed(2) + " ms";
    return (value / 1e6).toFixed(2) + " s";
  }
  if (unit === "bytes") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let scaled = value, index = 0;
    while (scaled >= 1024 && index < units.length - 1) { scaled /= 1024; index++; }
    return (index === 0 ? Math.round(scaled) : scaled.toFixed(1)) + " " + units[index];
  }
  return value >= 100 ? Math.round(value).toLocaleString("en-US") : String(Math.round(value * 10) / 10);
}

function clock(ms) {
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
}

function buildCards() {
  const grid = document.getElementById("charts");
  for (const chart of CHARTS) {
    const card = document.createElement("section");
    card.className = "card";
    card.id = "card-" + chart.id;
    card.innerHTML =
      '<header><h2></h2><output id="value-' + chart.id + '">0</output></header><p class="note"></p>' +
      '<div class="plot"><canvas id="chart-' + chart.id + '"></canvas></div>' +
      '<div class="axis"><span></span><span></span><span></span></div><ul class="legend"></ul>';
    card.querySelector("h2").textContent = chart.title;
    card.querySelector(".note").textContent = chart.note;
    const legend = card.querySelector(".legend");
    chart.series.forEach((series, index) => {
      const item = document.createElement("li");
      item.innerHTML = '<i></i><span></span> <b id="value-' + chart.id + "-" + index + '">0</b>';
      item.querySelector("i").style.background = series.color;
      item.querySelector("span").textContent = series.label;
      legend.appendChild(item);
    });
    grid.appendChild(card);
  }
}

/** Labels under a chart: the times of its oldest, middle and newest points. */
function labelAxis(chart) {
  const spans = document.querySelectorAll("#card-" + chart.id + " .axis span");
  if (times.length === 0) return;
  const oldest = times[0], newest = times[times.length - 1];
  spans[0].textContent = clock(oldest);
  spans[1].textContent = times.length > 2 ? clock(oldest + (newest - oldest) / 2) : "";
  spans[2].textContent = clock(newest);
}

function draw(chart) {
  const canvas = document.getElementById("chart-" + chart.id);
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 480, cssHeight = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
    canvas.width = Math.round(cssWidth * ratio); canvas.height = Math.round(cssHeight * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  const lines = history.get(chart.id);
  let max = 0;
  for (const points of lines) for (const value of points) if (value > max) max = value;
  const top = max > 0 ? max * 1.1 : 1;
  const left = 4, right = cssWidth - 4, bottom = cssHeight - 4, topY = 16;
  ctx.strokeStyle = "#2a3140"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = topY + ((bottom - topY) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
  }
  ctx.fillStyle = "#8a94a6"; ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(format(top, chart.unit), left + 2, topY - 4);
  const step = (right - left) / (HISTORY_POINTS - 1);
  lines.forEach((points, index) => {
    if (points.length === 0) return;
    ctx.strokeStyle = chart.series[index].color; ctx.lineWidth = 2;
    ctx.beginPath();
    const offset = HISTORY_POINTS - points.length;
    points.forEach((value, i) => {
      const x = left + (offset + i) * step;
      const y = bottom - (value / top) * (bottom - topY);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
  labelAxis(chart);
}

/** Whether this instance is in a fleet (fleet.redis_url), known when the page is built. */
const IN_FLEET = __IN_FLEET__;
/** "instance" or "fleet" (in a fleet, the page opened as /dashboard#fleet starts in the fleet's view). */
let scope = IN_FLEET && location.hash === "#fleet" ? "fleet" : "instance";
let source = null;

function update(data) {
  if (data.scope === "fleet") {
    if (data.error) { setState(data.error, "down"); return; }
    setState("live", "live");
    const total = data.total;
    drawCharts(total);
    renderInstances(data.instances);
    document.getElementById("summary").textContent =
      "fleet of " + data.instances.length + " \u00b7 " + Math.round(total.counters.requests).toLocaleString("en-US") +
      " requests \u00b7 " + Math.round(total.counters.activeConnections).toLocaleString("en-US") +
      " connections \u00b7 " + Math.round(total.counters.rateLimited).toLocaleString("en-US") + " rate limited";
  } else {
    drawCharts(data);
    summarize(data);
  }
  document.body.dataset.updates = String(Number(document.body.dataset.updates || "0") + 1);
}

function renderInstances(instances) {
  const body = document.querySelector("#instances tbody");
  body.replaceChildren();
  for (const entry of instances) {
    const s = entry.snapshot;
    const row = document.createElement("tr");
    for (const text of [
      entry.id,
      entry.ageSeconds.toFixed(1) + " s",
      format(s.rates.requestsPerSecond, "count"),
      format(s.counters.activeConnections, "count"),
      format(s.counters.rateLimited, "count"),
      format(s.latency.p99Micros, "micros"),
      s.process.cpuPercent.toFixed(1) + " %",
    ]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

function drawCharts(snapshot) {
  times.push(snapshot.atMs);
  if (times.length > HISTORY_POINTS) times.shift();
  for (const chart of CHARTS) {
    const lines = history.get(chart.id);
    chart.series.forEach((series, index) => {
      const value = read(snapshot, series.path);
      const points = lines[index];
      points.push(value);
      if (points.length > HISTORY_POINTS) points.shift();
      document.getElementById("value-" + chart.id + "-" + index).textContent = format(value, chart.unit);
    });
    document.getElementById("value-" + chart.id).textContent = format(lines[0][lines[0].length - 1], chart.unit);
    draw(chart);
  }
}

function summarize(snapshot) {
  const c = snapshot.counters;
  // Totals since start (the panels show rates and what is open now); echo answers no requests, so none are counted.
  const parts = [snapshot.protocol, "up " + Math.floor(snapshot.uptimeSeconds) + " s"];
  if (snapshot.protocol !== "echo") parts.push(Math.round(c.requests).toLocaleString("en-US") + " requests");
  parts.push(
    Math.round(c.connectionsAccepted).toLocaleString("en-US") + " connections accepted",
    "cpu " + snapshot.process.cpuPercent.toFixed(1) + " %",
    "rss " + format(snapshot.process.rssBytes, "bytes"),
  );
  document.getElementById("summary").textContent = parts.join(" \u00b7 ");
  showCertificates(snapshot);
  const upstreams = snapshot.upstreams || [];
  const panel = document.getElementById("upstreams");
  panel.hidden = upstreams.length === 0;
  if (upstreams.length > 0) panel.querySelector("tbody").innerHTML = upstreamRowsHtml(upstreams);
}

function setState(text, className) {
  const state = document.getElementById("state");
  state.textContent = text;
  state.className = className;
}

// Days until each TLS certificate expires (gauge tlsCertificateExpiry: server name -> notAfter, Unix seconds;
// "*" is the default certificate), highlighted when one is two weeks away or less.
function showCertificates(snapshot) {
  const line = document.getElementById("certificates");
  const expiry = snapshot.gauges.tlsCertificateExpiry;
  const names = expiry ? Object.keys(expiry) : [];
  line.hidden = names.length === 0;
  if (names.length === 0) return;
  let soonest = Infinity;
  line.textContent = "certificates: " + names.map((name) => {
    const days = Math.floor((expiry[name] * 1000 - snapshot.atMs) / 86400000);
    soonest = Math.min(soonest, days);
    return (name === "*" ? "default" : name) + " expires in " + days + (days === 1 ? " day" : " days");
  }).join(" \u00b7 ");
  line.className = soonest < 14 ? "soon" : "";
}

function connect() {
  if (source !== null) source.close();
  times.length = 0;
  for (const lines of history.values()) for (const points of lines) points.length = 0;
  document.getElementById("instances").hidden = scope !== "fleet";
  for (const button of document.querySelectorAll("#scope button")) {
    button.className = button.dataset.scope === scope ? "on" : "";
  }
  source = scope === "fleet" ? new EventSource("events?scope=fleet") : new EventSource("events");
  source.onopen = () => setState("live", "live");
  source.onmessage = (event) => update(JSON.parse(event.data));
  source.onerror = () => setState("reconnecting", "down");
}

/** The fleet's view is offered only when this instance is in a fleet (elsewhere its endpoints answer 404). */
function offerFleet() {
  if (!IN_FLEET) return;
  const nav = document.getElementById("scope");
  nav.hidden = false;
  for (const button of nav.querySelectorAll("button")) {
    button.onclick = () => { scope = button.dataset.scope; location.hash = scope === "fleet" ? "fleet" : ""; connect(); };
  }
}

buildCards();
CHARTS.forEach(draw);
window.addEventListener("resize", () => CHARTS.forEach(draw));
connect();
offerFleet();
// Last: events arrive after the script has run, so update() finds it defined (src/http/dashboard-upstreams.ts).
const upstreamRowsHtml = __UPSTREAM_ROWS__;
`;

// The grid fills the window below the header (rows share the height), each chart's plot fills its card.
const PAGE_STYLE = `
:root { color-scheme: dark; }
* { box-sizing: border-box; }
html, body { height: 100%; }
body { margin: 0; display: flex; flex-direction: column; font: 14px/1.4 system-ui, sans-serif; background: #12161f; color: #dfe6f0; }
body > header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid #232a38; }
h1 { font-size: 18px; margin: 0; }
#summary { color: #8a94a6; flex: 1; }
#state { font-weight: 600; }
#state.live { color: #48c774; } #state.down { color: #ff6b6b; }
#certificates { padding: 6px 20px 0; color: #8a94a6; } #certificates.soon { color: #ffdd57; font-weight: 600; }
#charts { flex: 1; display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); grid-auto-rows: minmax(260px, 1fr); gap: 14px; padding: 16px 20px; }
.card { display: flex; flex-direction: column; min-height: 0; background: #1a202c; border: 1px solid #232a38; border-radius: 8px; padding: 10px 12px; }
.card header { display: flex; justify-content: space-between; align-items: baseline; }
h2 { font-size: 13px; font-weight: 600; margin: 0; color: #aab4c5; }
.note { margin: 2px 0 0; color: #7d8799; font-size: 12px; }
output { font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }
.plot { flex: 1; position: relative; min-height: 100px; margin-top: 6px; }
canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
.axis { display: flex; justify-content: space-between; color: #8a94a6; font-size: 11px; font-variant-numeric: tabular-nums; min-height: 15px; }
.legend { list-style: none; display: flex; gap: 14px; margin: 4px 0 0; padding: 0; color: #8a94a6; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
.legend b { color: #dfe6f0; font-weight: 600; font-variant-numeric: tabular-nums; }
#scope button { background: #1a202c; color: #aab4c5; border: 1px solid #2a3140; padding: 3px 10px; cursor: pointer; }
#scope button.on { background: #2a3140; color: #dfe6f0; }
#instances { padding: 0 20px 20px; }
#instances table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
#instances th, #instances td { text-align: right; padding: 4px 8px; border-bottom: 1px solid #232a38; }
#instances th:first-child, #instances td:first-child { text-align: left; }
`;

/**
 * The page for a server speaking `protocol` (only the panels it uses), with the fleet's view when `inFleet`; served
 * as is by the admin listener.
 */
export function dashboardHtml(protocol: Protocol, inFleet: boolean): string {
  const script = PAGE_SCRIPT.replace("__CHARTS__", JSON.stringify(chartsFor(protocol)))
    .replace("__IN_FLEET__", String(inFleet))
    .replace("__UPSTREAM_ROWS__", () => upstreamRowsHtml.toString());
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hps dashboard</title>
<link rel="icon" href="data:,">
<style>${PAGE_STYLE}${UPSTREAM_PANEL_STYLE}</style>
</head>
<body>
<header><h1>hps</h1><nav id="scope" hidden><button data-scope="instance">this instance</button><button data-scope="fleet">fleet</button></nav><span id="summary">waiting for data…</span><span id="state">connecting</span></header>
<div id="certificates" hidden></div>
<main id="charts"></main>
<section id="instances" hidden><table><thead><tr><th>instance</th><th>published</th><th>req/s</th><th>connections</th><th>rate limited</th><th>p99</th><th>cpu</th></tr></thead><tbody></tbody></table></section>
${UPSTREAM_PANEL}
<script>${script}</script>
</body>
</html>
`;
}
