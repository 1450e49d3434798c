// The fleet's view for people and for Prometheus: the sum's report and one line per instance; the fleet's families.
import { formatMetrics } from "../stats/prometheus.ts";
import { formatReport } from "../stats/report.ts";
import type { LatencyHistogram } from "../stats/histogram.ts";
import type { FleetView } from "./fleet-snapshot.ts";

/** Lines of the fleet's report: how many instances, the sum (as an instance's report), then each instance. */
export function formatFleetReport(view: FleetView): string[] {
  const count = view.instances.length;
  const lines = [
    `fleet of ${count} instance${count === 1 ? "" : "s"}` +
      (view.unreadable > 0 ? ` (${view.unreadable} more published statistics this version cannot read)` : "") +
      "; the sum:",
    ...formatReport(view.total).map((line) => `  ${line}`),
  ];
  for (const { id, ageSeconds, snapshot } of view.instances) {
    const c = snapshot.counters;
    lines.push(
      `instance ${id}: published ${ageSeconds.toFixed(1)} s ago, up ${Math.floor(snapshot.uptimeSeconds)} s, ` +
        `${Math.round(snapshot.rates.requestsPerSecond).toLocaleString("en-US")} req/s, ` +
        `${Math.round(c.activeConnections).toLocaleString("en-US")} connections, ` +
        `${Math.round(c.rateLimited).toLocaleString("en-US")} rate limited, p99 ${snapshot.latency.p99Micros} µs, ` +
        `cpu ${snapshot.process.cpuPercent.toFixed(1)} %`,
    );
  }
  return lines;
}

/**
 * /metrics?scope=fleet: the sum as an instance's metrics (counters, gauges and the latency histogram merged
 * exactly), then the fleet's own families, labelled by instance. Monitoring should still scrape every instance:
 * this is the view of one moment, and an instance that leaves takes its counts out of the sum.
 */
export function formatFleetMetrics(view: FleetView, histogram: LatencyHistogram): string {
  const lines = [
    "# HELP hps_fleet_instances Instances whose statistics are in this sum (published within their TTL).",
    "# TYPE hps_fleet_instances gauge",
    `hps_fleet_instances ${view.instances.length}`,
    "# HELP hps_fleet_instance_age_seconds Seconds since the instance last published its statistics.",
    "# TYPE hps_fleet_instance_age_seconds gauge",
    ...view.instances.map(
      (entry) => `hps_fleet_instance_age_seconds{instance="${label(entry.id)}"} ${entry.ageSeconds}`,
    ),
    "# HELP hps_fleet_instance_requests_total Requests the instance has finished (as it last published).",
    "# TYPE hps_fleet_instance_requests_total counter",
    ...view.instances.map(
      (entry) => `hps_fleet_instance_requests_total{instance="${label(entry.id)}"} ${entry.snapshot.counters.requests}`,
    ),
  ];
  return `${formatMetrics(view.total, histogram)}${lines.join("\n")}\n`;
}

function label(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}
