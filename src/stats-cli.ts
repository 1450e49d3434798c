// `bun run stats [--url http://127.0.0.1:9090] [--fleet] [--json]`: prints the status report of a running server (or of
// its whole fleet) from its /stats.
import { DEFAULT_CONFIG } from "./config/schema.ts";
import { formatFleetReport } from "./fleet/fleet-report.ts";
import type { FleetView } from "./fleet/fleet-snapshot.ts";
import { formatReport } from "./stats/report.ts";
import type { Snapshot } from "./stats/snapshot.ts";

const USAGE = `usage: bun run stats [--url URL] [--fleet] [--json]
  --url URL   admin address of the running server (default: the [admin] bind and port defaults)
  --fleet     every instance of the server's fleet and their sum (fleet.redis_url), from /stats?scope=fleet
  --json      print the raw /stats JSON instead of the table
`;
const FETCH_TIMEOUT_MS = 5000;

interface Arguments {
  url: string;
  isJson: boolean;
  isFleet: boolean;
}

/** Parses argv; returns a message string for a usage error. */
function parseArguments(argv: readonly string[]): Arguments | string {
  const adminDefaults = DEFAULT_CONFIG.admin;
  const result: Arguments = {
    url: `http://${adminDefaults.bind}:${adminDefaults.port}`,
    isJson: false,
    isFleet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === "--json") result.isJson = true;
    else if (argument === "--fleet") result.isFleet = true;
    else if (argument === "--url") {
      const value = argv[++i];
      if (value === undefined) return "--url needs a value, e.g. --url http://127.0.0.1:9090";
      result.url = value;
    } else if (argument.startsWith("--url=")) result.url = argument.slice("--url=".length);
    else if (argument === "--help" || argument === "-h") return "";
    else return `unknown argument ${argument}`;
  }
  result.url = result.url.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(result.url)) return `--url must start with http:// or https:// (got ${result.url})`;
  return result;
}

async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseArguments(argv);
  if (typeof parsed === "string") {
    if (parsed !== "") process.stderr.write(`stats: ${parsed}\n`);
    process.stderr.write(USAGE);
    return parsed === "" ? 0 : 2;
  }
  const statsUrl = `${parsed.url}/stats${parsed.isFleet ? "?scope=fleet" : ""}`;
  let response: Response;
  try {
    response = await fetch(statsUrl, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (error) {
    process.stderr.write(
      `stats: cannot reach ${statsUrl} (${(error as Error).message}); is the server running with [admin] enabled, and is --url its admin address?\n`,
    );
    return 1;
  }
  if (!response.ok) {
    // The fleet's answers say why themselves (not in a fleet, Redis unavailable).
    const reason =
      parsed.isFleet && (response.status === 404 || response.status === 503)
        ? (await response.text()).trim()
        : "is --url the admin address?";
    process.stderr.write(`stats: ${statsUrl} answered ${response.status} ${response.statusText}; ${reason}\n`);
    return 1;
  }
  const text = await response.text();
  if (parsed.isJson) {
    process.stdout.write(`${text}\n`);
    return 0;
  }
  let snap: Snapshot | FleetView;
  try {
    snap = JSON.parse(text) as Snapshot | FleetView;
  } catch {
    process.stderr.write(`stats: ${statsUrl} did not answer JSON; is --url the admin address?\n`);
    return 1;
  }
  const isFleetView = "scope" in snap && snap.scope === "fleet";
  const lines = isFleetView ? formatFleetReport(snap as FleetView) : formatReport(snap as Snapshot);
  process.stdout.write(
    `hps ${isFleetView ? "fleet " : ""}status at ${parsed.url} (${new Date(snap.atMs).toISOString()})\n`,
  );
  for (const line of lines) process.stdout.write(`  ${line}\n`);
  return 0;
}

process.exitCode = await main(Bun.argv.slice(2));
