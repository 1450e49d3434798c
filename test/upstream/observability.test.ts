// Upstream servers on /stats, /metrics and in the periodic report: counts by status class, hps's own answers, the
// response-time histogram, health state and pooled connections.
import { describe, expect, test } from "bun:test";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import { startServer } from "../../src/server.ts";
import { formatReport } from "../../src/stats/report.ts";
import { snapshot } from "../../src/stats/snapshot.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { closedPort, startBackend, upstreamSettings } from "../helpers/upstream.ts";

/** Debian's python3 with python3-prometheus-client: the reference parser of the exposition format. */
const PYTHON = ["/usr/bin/python3", "python3"].find((path) => Bun.which(path) !== null) ?? "python3";
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([{"name": f.name, "type": f.type, "samples": len(f.samples)} for f in text_string_to_metric_families(sys.stdin.read())]))
`;

function parseExposition(text: string): { name: string; type: string; samples: number }[] {
  const result = Bun.spawnSync([PYTHON, "-c", PARSE], { stdin: new TextEncoder().encode(text), timeout: 20_000 });
  if (result.exitCode !== 0) throw new Error(`prometheus_client rejected the exposition:\n${result.stderr.toString()}`);
  return JSON.parse(result.stdout.toString());
}

describe("upstream observability", () => {
  test("/metrics and /stats count per server; an ejected server reads as down; the report has a line per group", async () => {
    await using backend = startBackend((request) =>
      new URL(request.url).pathname === "/missing" ? new Response("no", { status: 404 }) : new Response("ok"),
    );
    const dead = `127.0.0.1:${closedPort()}`;
    await using server = await startServer(
      testConfig({
        admin: { enabled: true, port: 0 },
        http: { routes: [{ path_prefix: "/", upstream: "app", root: "", strip_prefix: false }] },
        upstreams: [upstreamSettings([backend.address, dead], { max_fails: 1, fail_timeout_s: 60, retries: 1 })],
      } as ConfigOverrides),
    );
    const base = `http://127.0.0.1:${server.port}`;
    for (let i = 0; i < 4; i++) expect((await fetch(`${base}/x`)).status).toBe(200);
    expect((await fetch(`${base}/missing`)).status).toBe(404);

    const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    const line = (name: string, labels: string) =>
      Number(
        metrics
          .split("\n")
          .find((text) => text.startsWith(`${name}{${labels}}`))
          ?.split(" ")[1] ?? Number.NaN,
      );
    const app = `upstream="app",server="${backend.address}"`;
    expect(line("hps_upstream_requests_total", `${app},code="2xx"`)).toBe(4);
    expect(line("hps_upstream_requests_total", `${app},code="4xx"`)).toBe(1);
    expect(line("hps_upstream_response_seconds_count", app)).toBe(5);
    expect(line("hps_upstream_response_seconds_bucket", `${app},le="+Inf"`)).toBe(5);
    expect(line("hps_upstream_server_up", app)).toBe(1);
    // The dead server refused once (the request went on to the live one) and max_fails 1 ejected it.
    const down = `upstream="app",server="${dead}"`;
    expect(line("hps_upstream_server_up", down)).toBe(0);
    expect(line("hps_upstream_failures_total", `${down},reason="connect_failed"`)).toBe(1);
    expect(line("hps_upstream_ejections_total", down)).toBe(1);
    expect(line("hps_upstream_retries_total", down)).toBe(1);
    expect(line("hps_upstream_connections", `${app},state="idle"`)).toBeGreaterThanOrEqual(1);
    // The whole exposition, upstream families included, parses with the reference parser; no family repeats.
    const families = parseExposition(metrics);
    expect(new Set(families.map((family) => family.name)).size).toBe(families.length);
    expect(families.find((family) => family.name === "hps_upstream_response_seconds")?.type).toBe("histogram");
    expect(families.find((family) => family.name === "hps_upstream_requests")?.type).toBe("counter");

    const stats = (await (await fetch(`http://127.0.0.1:${server.adminPort}/stats`)).json()) as {
      upstreams: { server: string; state: string; responses: Record<string, number> }[];
    };
    const live = stats.upstreams.find((entry) => entry.server === backend.address)!;
    expect(live.state).toBe("up");
    expect(live.responses["2xx"]).toBe(4);
    expect(stats.upstreams.find((entry) => entry.server === dead)!.state).toBe("ejected");

    const report = formatReport(snapshot(server.context)).join("\n");
    expect(report).toContain("upstream app: 1/2 servers up, 0 in flight, 1 failed attempts, 0 answered by hps");
  });

  test('with every server out, 503 counts under server "-"', async () => {
    const dead = `127.0.0.1:${closedPort()}`;
    await using server = await startServer(
      testConfig({
        admin: { enabled: true, port: 0 },
        http: { routes: [{ path_prefix: "/", upstream: "app", root: "", strip_prefix: false }] },
        upstreams: [upstreamSettings([dead], { max_fails: 1, fail_timeout_s: 60, retries: 0 })],
      } as ConfigOverrides),
    );
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(502);
    expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(503);
    await waitFor(
      async () => {
        const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
        return (
          metrics.includes(`hps_upstream_requests_total{upstream="app",server="-",code="503"} 1`) &&
          metrics.includes(`hps_upstream_requests_total{upstream="app",server="${dead}",code="502"} 1`)
        );
      },
      2000,
      "the answers in /metrics",
    );
  });
});
