// The live dashboard: one self-contained HTML page (no external scripts) drawing canvas charts from /events.

/**
 * Each chart: an id, a title, its unit and the series it draws, each read from a snapshot by a path.
 * Values shown in the big number are the first series'. Kept as data so the page script stays generic.
 */
const CHARTS = [
  {
    id: "rps",
    title: "Requests / s",
    unit: "count",
    series: [{ label: "requests/s", path: "rates.requestsPerSecond", color: "#4f9dff" }],
  },
  {
    id: "latency",
    title: "Latency (last second)",
    unit: "micros",
    series: [
      { label: "p50", path: "intervalLatency.p50Micros", color: "#48c774" },
      { label: "p90", path: "intervalLatency.p90Micros", color: "#ffdd57" },
      { label: "p99", path: "intervalLatency.p99Micros", color: "#ff6b6b" },
    ],
  },
  {
    id: "connections",
    title: "Active connections",
    unit: "count",
    series: [{ label: "active", path: "counters.activeConnections", color: "#b86bff" }],
  },
  {
    id: "bytes",
    title: "Bytes / s",
    unit: "bytes",
    series: [
      { label: "written", path: "rates.bytesWrittenPerSecond", color: "#4fd1c5" },
      { label: "read", path: "rates.bytesReadPerSecond", color: "#f6ad55" },
    ],
  },
  {
    id: "pool",
    title: "Pool queue depth",
    unit: "count",
    series: [
      { label: "queued", path: "gauges.pool.queued", color: "#ff9f43" },
      { label: "running", path: "gauges.pool.running", color: "#54a0ff" },
    ],
  },
  {
    id: "arena",
    title: "Arena in use",
    unit: "bytes",
    series: [
      { label: "in use", path: "gauges.arena.bytesInUse", color: "#1dd1a1" },
      { label: "peak", path: "gauges.arena.peakBytes", color: "#8395a7" },
    ],
  },
] as const;

const PAGE_SCRIPT = String.raw`
"use strict";
const CHARTS = __CHARTS__;
const HISTORY_POINTS = 120;
const history = new Map(CHARTS.map((chart) => [chart.id, chart.series.map(() => [])]));

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

function buildCards() {
  const grid = document.getElementById("charts");
  for (const chart of CHARTS) {
    const card = document.createElement("section");
    card.className = "card";
    card.innerHTML =
      '<header><h2></h2><output id="value-' + chart.id + '">0</output></header>' +
      '<canvas id="chart-' + chart.id + '" width="480" height="180"></canvas><ul class="legend"></ul>';
    card.querySelector("h2").textContent = chart.title;
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

function draw(chart) {
  const canvas = document.getElementById("chart-" + chart.id);
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 480, cssHeight = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(cssWidth * ratio)) { canvas.width = Math.round(cssWidth * ratio); canvas.height = Math.round(cssHeight * ratio); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  const lines = history.get(chart.id);
  let max = 0;
  for (const points of lines) for (const value of points) if (value > max) max = value;
  const top = max > 0 ? max * 1.1 : 1;
  const left = 4, right = cssWidth - 4, bottom = cssHeight - 16, topY = 14;
  ctx.strokeStyle = "#2a3140"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = topY + ((bottom - topY) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
  }
  ctx.fillStyle = "#8a94a6"; ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(format(top, chart.unit), left + 2, topY - 3);
  ctx.fillText(HISTORY_POINTS + " s", right - 34, cssHeight - 3);
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
}

function update(snapshot) {
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
  const c = snapshot.counters;
  document.getElementById("summary").textContent =
    snapshot.protocol + " \u00b7 up " + Math.floor(snapshot.uptimeSeconds) + " s \u00b7 " +
    Math.round(c.requests).toLocaleString("en-US") + " requests \u00b7 " +
    Math.round(c.connectionsAccepted).toLocaleString("en-US") + " connections \u00b7 cpu " +
    snapshot.process.cpuPercent.toFixed(1) + " % \u00b7 rss " + format(snapshot.process.rssBytes, "bytes");
  document.body.dataset.updates = String(Number(document.body.dataset.updates || "0") + 1);
}

function connect() {
  const state = document.getElementById("state");
  const events = new EventSource("events");
  events.onopen = () => { state.textContent = "live"; state.className = "live"; };
  events.onmessage = (event) => update(JSON.parse(event.data));
  events.onerror = () => { state.textContent = "reconnecting"; state.className = "down"; };
}

buildCards();
CHARTS.forEach(draw);
connect();
`;

const PAGE_STYLE = `
:root { color-scheme: dark; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #12161f; color: #dfe6f0; }
body > header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid #232a38; }
h1 { font-size: 18px; margin: 0; }
#summary { color: #8a94a6; flex: 1; }
#state { font-weight: 600; }
#state.live { color: #48c774; } #state.down { color: #ff6b6b; }
#charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; padding: 16px 20px; }
.card { background: #1a202c; border: 1px solid #232a38; border-radius: 8px; padding: 10px 12px; }
.card header { display: flex; justify-content: space-between; align-items: baseline; }
h2 { font-size: 13px; font-weight: 600; margin: 0; color: #aab4c5; }
output { font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }
canvas { display: block; width: 100%; height: 180px; margin-top: 6px; }
.legend { list-style: none; display: flex; gap: 14px; margin: 6px 0 0; padding: 0; color: #8a94a6; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
.legend b { color: #dfe6f0; font-weight: 600; font-variant-numeric: tabular-nums; }
`;

/** The whole page; served as is by the admin listener at /dashboard. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hps dashboard</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<header><h1>hps</h1><span id="summary">waiting for data…</span><span id="state">connecting</span></header>
<main id="charts"></main>
<script>${PAGE_SCRIPT.replace("__CHARTS__", JSON.stringify(CHARTS))}</script>
</body>
</html>
`;
