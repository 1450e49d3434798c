// Upstream statistics for people and scrapers: the /stats section, Prometheus families and the report line, from the
// shared per-server numbers (stats.ts).
import { HealthState } from "./health.ts";
import { type Field, NO_SERVER, RESPONSE_BUCKETS_SECONDS, type ServerNumbers, type UpstreamStats } from "./stats.ts";

/** One server of one group, as /stats shows it. */
export interface UpstreamServerSnapshot {
  readonly upstream: string;
  /** The server's address, or "-" for the group's answers when no server was available. */
  readonly server: string;
  /** "up", "ejected" (passive health), "down" (active check failing); "-" for the no-server row. */
  readonly state: string;
  readonly inFlight: number;
  readonly connectionsIdle: number;
  readonly connectionsActive: number;
  /** Responses the server gave, by status class. */
  readonly responses: { readonly "1xx": number; "2xx": number; "3xx": number; "4xx": number; "5xx": number };
  /** Answers hps gave instead (the server failed, timed out, or none was available). */
  readonly answered: { readonly "502": number; readonly "503": number; readonly "504": number };
  readonly failures: {
    readonly connectFailed: number;
    readonly connectTimedOut: number;
    readonly lost: number;
    readonly readTimedOut: number;
    readonly badResponse: number;
  };
  readonly retries: number;
  readonly staleConnectionsReplaced: number;
  readonly ejections: number;
  readonly tcpConnections: number;
  readonly bytesToServer: number;
  readonly bytesFromServer: number;
  /** Responses timed (request sent to last byte), and their mean in milliseconds. */
  readonly responsesTimed: number;
  readonly meanResponseMs: number;
}

const STATE_NAMES: Record<number, string> = {
  [HealthState.UP]: "up",
  [HealthState.EJECTED]: "ejected",
  [HealthState.CHECK_FAILED]: "down",
};

/** The servers of the groups running now (gauges published first on this thread), for /stats. */
export function upstreamSnapshot(stats: UpstreamStats): UpstreamServerSnapshot[] {
  return presentServers(stats).map((numbers) => {
    const c = numbers.counters;
    const timed = numbers.buckets.reduce((sum, count) => sum + count, 0);
    return {
      upstream: numbers.upstream,
      server: numbers.server,
      state: numbers.server === NO_SERVER ? "-" : (STATE_NAMES[numbers.health] ?? "up"),
      inFlight: c.inFlight,
      connectionsIdle: c.idle,
      connectionsActive: Math.max(0, c.connections - c.idle),
      responses: {
        "1xx": c.responses1xx,
        "2xx": c.responses2xx,
        "3xx": c.responses3xx,
        "4xx": c.responses4xx,
        "5xx": c.responses5xx,
      },
      answered: { "502": c.answered502, "503": c.answered503, "504": c.answered504 },
      failures: {
        connectFailed: c.connectFailures,
        connectTimedOut: c.connectTimeouts,
        lost: c.lost,
        readTimedOut: c.readTimeouts,
        badResponse: c.badResponses,
      },
      retries: c.retries,
      staleConnectionsReplaced: c.staleRetries,
      ejections: c.ejections,
      tcpConnections: c.tcpConnections,
      bytesToServer: c.bytesToServer,
      bytesFromServer: c.bytesFromServer,
      responsesTimed: timed,
      meanResponseMs: timed === 0 ? 0 : c.responseMicrosSum / timed / 1000,
    };
  });
}

/** The Prometheus families of the upstream servers (text format 0.0.4), or "" when no group runs. */
export function upstreamMetrics(stats: UpstreamStats): string {
  const servers = presentServers(stats);
  if (servers.length === 0) return "";
  const out: string[] = [];
  const family = (name: string, type: string, help: string) =>
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const sample = (name: string, labels: Record<string, string>, value: number) =>
    out.push(
      `${name}{${Object.entries(labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(",")}} ${value}`,
    );
  const real = servers.filter((numbers) => numbers.server !== NO_SERVER);

  family(
    "hps_upstream_requests_total",
    "counter",
    'Responses from upstream servers by status class, and answers hps gave instead (code 502: the server failed; 504: it timed out; 503 with server "-": no server was available).',
  );
  for (const numbers of servers) {
    const c = numbers.counters;
    const labels = { upstream: numbers.upstream, server: numbers.server };
    if (numbers.server !== NO_SERVER) {
      sample("hps_upstream_requests_total", { ...labels, code: "1xx" }, c.responses1xx);
      sample("hps_upstream_requests_total", { ...labels, code: "2xx" }, c.responses2xx);
      sample("hps_upstream_requests_total", { ...labels, code: "3xx" }, c.responses3xx);
      sample("hps_upstream_requests_total", { ...labels, code: "4xx" }, c.responses4xx);
      sample("hps_upstream_requests_total", { ...labels, code: "5xx" }, c.responses5xx);
      sample("hps_upstream_requests_total", { ...labels, code: "502" }, c.answered502);
      sample("hps_upstream_requests_total", { ...labels, code: "504" }, c.answered504);
    } else {
      sample("hps_upstream_requests_total", { ...labels, code: "503" }, c.answered503);
    }
  }

  family(
    "hps_upstream_response_seconds",
    "histogram",
    "Time from the request sent to the last byte of the upstream server's response.",
  );
  for (const numbers of real) {
    const labels = { upstream: numbers.upstream, server: numbers.server };
    let cumulative = 0;
    RESPONSE_BUCKETS_SECONDS.forEach((bound, index) => {
      cumulative += numbers.buckets[index]!;
      sample("hps_upstream_response_seconds_bucket", { ...labels, le: String(bound) }, cumulative);
    });
    cumulative += numbers.buckets[RESPONSE_BUCKETS_SECONDS.length]!;
    sample("hps_upstream_response_seconds_bucket", { ...labels, le: "+Inf" }, cumulative);
    sample("hps_upstream_response_seconds_sum", labels, numbers.counters.responseMicrosSum / 1e6);
    sample("hps_upstream_response_seconds_count", labels, cumulative);
  }

  family(
    "hps_upstream_server_up",
    "gauge",
    "1 while the server may get requests; 0 while passive health has ejected it or its active check fails.",
  );
  for (const numbers of real) {
    sample(
      "hps_upstream_server_up",
      { upstream: numbers.upstream, server: numbers.server },
      numbers.health === 0 ? 1 : 0,
    );
  }
  family(
    "hps_upstream_connections",
    "gauge",
    "Connections open to the server, idle in the pool or carrying a request.",
  );
  for (const numbers of real) {
    const labels = { upstream: numbers.upstream, server: numbers.server };
    const c = numbers.counters;
    sample("hps_upstream_connections", { ...labels, state: "idle" }, c.idle);
    sample("hps_upstream_connections", { ...labels, state: "active" }, Math.max(0, c.connections - c.idle));
  }
  family("hps_upstream_in_flight", "gauge", "Requests (HTTP) or connections (TCP) the server is serving now.");
  for (const numbers of real) {
    sample("hps_upstream_in_flight", { upstream: numbers.upstream, server: numbers.server }, numbers.counters.inFlight);
  }
  family(
    "hps_upstream_failures_total",
    "counter",
    "Failed attempts by kind: connect_failed, connect_timeout, lost (closed before the response), read_timeout, bad_response.",
  );
  for (const numbers of real) {
    const labels = { upstream: numbers.upstream, server: numbers.server };
    const c = numbers.counters;
    sample("hps_upstream_failures_total", { ...labels, reason: "connect_failed" }, c.connectFailures);
    sample("hps_upstream_failures_total", { ...labels, reason: "connect_timeout" }, c.connectTimeouts);
    sample("hps_upstream_failures_total", { ...labels, reason: "lost" }, c.lost);
    sample("hps_upstream_failures_total", { ...labels, reason: "read_timeout" }, c.readTimeouts);
    sample("hps_upstream_failures_total", { ...labels, reason: "bad_response" }, c.badResponses);
  }
  const perServer: [string, string, keyof typeof Field][] = [
    ["hps_upstream_retries_total", "Requests or connections sent to another server after this one failed.", "retries"],
    ["hps_upstream_ejections_total", "Times passive health (max_fails) ejected the server.", "ejections"],
    [
      "hps_upstream_stale_connections_total",
      "Requests replayed on a fresh connection after a pooled one turned out closed by the server.",
      "staleRetries",
    ],
    ["hps_upstream_tcp_connections_total", "TCP proxy connections relayed to the server.", "tcpConnections"],
  ];
  for (const [name, help, field] of perServer) {
    family(name, "counter", help);
    for (const numbers of real) {
      sample(name, { upstream: numbers.upstream, server: numbers.server }, numbers.counters[field]);
    }
  }
  family("hps_upstream_bytes_total", "counter", "TCP proxy bytes relayed to and from the server.");
  for (const numbers of real) {
    const labels = { upstream: numbers.upstream, server: numbers.server };
    sample("hps_upstream_bytes_total", { ...labels, direction: "to_server" }, numbers.counters.bytesToServer);
    sample("hps_upstream_bytes_total", { ...labels, direction: "from_server" }, numbers.counters.bytesFromServer);
  }
  return `${out.join("\n")}\n`;
}

/** Lines for the periodic report: per group, its servers up of all, failed attempts and answers hps gave instead. */
export function upstreamReportLines(servers: readonly UpstreamServerSnapshot[]): string[] {
  const groups = new Map<string, { up: number; all: number; inFlight: number; failed: number; answered: number }>();
  for (const server of servers) {
    const entry = groups.get(server.upstream) ?? { up: 0, all: 0, inFlight: 0, failed: 0, answered: 0 };
    if (server.server !== NO_SERVER) {
      entry.all += 1;
      if (server.state === "up") entry.up += 1;
      entry.inFlight += server.inFlight;
      const f = server.failures;
      entry.failed += f.connectFailed + f.connectTimedOut + f.lost + f.readTimedOut + f.badResponse;
    }
    entry.answered += server.answered["502"] + server.answered["503"] + server.answered["504"];
    groups.set(server.upstream, entry);
  }
  return [...groups].map(
    ([name, g]) =>
      `upstream ${name}: ${g.up}/${g.all} servers up, ${g.inFlight} in flight, ${g.failed} failed attempts, ${g.answered} answered by hps (502/503/504)`,
  );
}

/** The pairs of the groups running now (gauges refreshed on this thread first). */
function presentServers(stats: UpstreamStats): ServerNumbers[] {
  return stats.read().filter((numbers) => numbers.counters.present > 0);
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
