// The dashboard's upstream panel: one row per server of the groups running, with its state, load and outcomes.
import type { UpstreamServerSnapshot } from "../upstream/metrics.ts";

/**
 * The panel's table rows as HTML. It runs in the page (its source is inlined there, so it uses nothing from outside
 * its body) and in tests.
 */
export function upstreamRowsHtml(servers: readonly UpstreamServerSnapshot[]): string {
  const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
  const number = (value: number) => Math.round(value).toLocaleString("en-US");
  let html = "";
  for (const server of servers) {
    const f = server.failures;
    const failed = f.connectFailed + f.connectTimedOut + f.lost + f.readTimedOut + f.badResponse;
    const answered = server.answered["502"] + server.answered["503"] + server.answered["504"];
    const r = server.responses;
    html +=
      `<tr data-state="${escapeHtml(server.state)}"><td>${escapeHtml(server.upstream)}</td><td>${escapeHtml(server.server)}</td>` +
      `<td class="state">${escapeHtml(server.state)}</td><td>${number(server.inFlight)}</td>` +
      `<td>${number(server.connectionsActive)} / ${number(server.connectionsIdle)}</td>` +
      `<td>${number(r["2xx"])}</td><td>${number(r["3xx"])}</td><td>${number(r["4xx"])}</td><td>${number(r["5xx"])}</td>` +
      `<td>${number(failed)}</td><td>${number(answered)}</td>` +
      `<td>${server.responsesTimed === 0 ? "-" : `${server.meanResponseMs.toFixed(1)} ms`}</td></tr>`;
  }
  return html;
}

/** The panel's markup (hidden until a snapshot lists upstream servers). */
export const UPSTREAM_PANEL = `<section id="upstreams" class="card upstreams" hidden>
<header><h2>Upstream servers</h2></header>
<p class="note">Each server of the groups routes and the TCP proxy send to: its state (up; ejected by failures; down by its health check), requests in flight, connections busy / idle in the pool, responses by status class, failed attempts, answers hps gave instead (502/503/504), and the mean time to the response's last byte.</p>
<table><thead><tr><th>group</th><th>server</th><th>state</th><th>in flight</th><th>conns busy / idle</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>failed</th><th>answered by hps</th><th>mean time</th></tr></thead><tbody></tbody></table>
</section>`;

/** The panel's style. */
export const UPSTREAM_PANEL_STYLE = `
.upstreams { margin: 0 20px 16px; }
.upstreams table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; margin-top: 6px; }
.upstreams th, .upstreams td { text-align: right; padding: 3px 8px; border-bottom: 1px solid #232a38; }
.upstreams th:nth-child(-n+3), .upstreams td:nth-child(-n+3) { text-align: left; }
.upstreams th { color: #8a94a6; font-weight: 600; }
.upstreams tr[data-state="up"] .state { color: #48c774; }
.upstreams tr[data-state="ejected"] .state, .upstreams tr[data-state="down"] .state { color: #ff6b6b; }
`;
