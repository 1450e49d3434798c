// The dashboard's upstream panel: a row per server with its state, load and outcomes, built in the page from /events.
import { describe, expect, test } from "bun:test";
import { dashboardHtml } from "../../src/http/dashboard.ts";
import { upstreamRowsHtml } from "../../src/http/dashboard-upstreams.ts";
import type { UpstreamServerSnapshot } from "../../src/upstream/metrics.ts";

function server(overrides: Partial<UpstreamServerSnapshot>): UpstreamServerSnapshot {
  return {
    upstream: "app",
    server: "127.0.0.1:9001",
    state: "up",
    inFlight: 3,
    connectionsIdle: 5,
    connectionsActive: 3,
    responses: { "1xx": 0, "2xx": 1200, "3xx": 4, "4xx": 7, "5xx": 1 },
    answered: { "502": 2, "503": 0, "504": 1 },
    failures: { connectFailed: 1, connectTimedOut: 0, lost: 2, readTimedOut: 1, badResponse: 0 },
    retries: 2,
    staleConnectionsReplaced: 0,
    ejections: 0,
    tcpConnections: 0,
    bytesToServer: 0,
    bytesFromServer: 0,
    responsesTimed: 1212,
    meanResponseMs: 2.345,
    ...overrides,
  };
}

describe("dashboard upstream panel", () => {
  test("a row per server: state, in flight, busy/idle connections, status classes, failures, hps's answers, time", () => {
    const html = upstreamRowsHtml([
      server({}),
      server({ server: "127.0.0.1:9002", state: "ejected", responsesTimed: 0 }),
    ]);
    const rows = html.split("</tr>").filter((row) => row !== "");
    expect(rows.length).toBe(2);
    const cells = (row: string) => [...row.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((match) => match[1]);
    expect(cells(rows[0]!)).toEqual([
      "app",
      "127.0.0.1:9001",
      "up",
      "3",
      "3 / 5",
      "1,200",
      "4",
      "7",
      "1",
      "4",
      "3",
      "2.3 ms",
    ]);
    expect(rows[1]).toContain('data-state="ejected"');
    expect(cells(rows[1]!).at(-1)).toBe("-");
  });

  test("names are escaped; the page carries the panel and its renderer, hidden until there are servers", () => {
    expect(upstreamRowsHtml([server({ upstream: "<b>x</b>" })])).toContain("&#60;b&#62;x&#60;/b&#62;");
    const page = dashboardHtml("http", false);
    expect(page).toContain('<section id="upstreams" class="card upstreams" hidden>');
    expect(page).toContain("const upstreamRowsHtml = function upstreamRowsHtml(servers)");
    // The renderer the page runs is the one tested here, as JavaScript the browser can run unchanged.
    const source = page.slice(page.indexOf("const upstreamRowsHtml = "), page.indexOf("</script>"));
    const inPage = new Function(`${source}; return upstreamRowsHtml;`)() as typeof upstreamRowsHtml;
    expect(inPage([server({})])).toBe(upstreamRowsHtml([server({})]));
  });
});
