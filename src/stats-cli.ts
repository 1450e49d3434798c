// `bun run stats [--url http://127.0.0.1:9090] [--fleet] [--json]`: prints the status report of a running server (or of
// its whole fleet) from its /stats.
import type { TLSOptions } from "bun";
import { DEFAULT_CONFIG } from "./config/schema.ts";
import { formatFleetReport } from "./fleet/fleet-report.ts";
import type { FleetView } from "./fleet/fleet-snapshot.ts";
import { formatReport } from "./stats/report.ts";
import type { Snapshot } from "./stats/snapshot.ts";

const USAGE = `usage: bun run stats [--url URL] [--fleet] [--json] [--cacert FILE] [--cert FILE --key FILE] [--insecure]
  --url URL      admin address of the running server (default: the [admin] bind and port defaults);
                 https://... when the server has admin.tls = true
  --fleet        every instance of the server's fleet and their sum (fleet.redis_url), from /stats?scope=fleet
  --json         print the raw /stats JSON instead of the table
  --cacert FILE  PEM file of the CA that signed the admin certificate (a private CA, or a self-signed certificate)
  --cert FILE    client certificate, when the server asks for one (tls.client_auth); with --key FILE
  --insecure     do not verify the admin certificate
`;
const FETCH_TIMEOUT_MS = 5000;

interface Arguments {
  url: string;
  isJson: boolean;
  isFleet: boolean;
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
  isInsecure: boolean;
}

/** The file options and what each sets. */
const FILE_OPTIONS = { "--cacert": "caFile", "--cert": "certFile", "--key": "keyFile" } as const;

/** Parses argv; returns a message string for a usage error. */
function parseArguments(argv: readonly string[]): Arguments | string {
  const adminDefaults = DEFAULT_CONFIG.admin;
  const result: Arguments = {
    url: `http://${adminDefaults.bind}:${adminDefaults.port}`,
    isJson: false,
    isFleet: false,
    caFile: null,
    certFile: null,
    keyFile: null,
    isInsecure: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === "--json") result.isJson = true;
    else if (argument === "--fleet") result.isFleet = true;
    else if (argument === "--insecure") result.isInsecure = true;
    else if (Object.hasOwn(FILE_OPTIONS, argument)) {
      const value = argv[++i];
      if (value === undefined) return `${argument} needs a file`;
      result[FILE_OPTIONS[argument as keyof typeof FILE_OPTIONS]] = value;
    } else if (argument === "--url") {
      const value = argv[++i];
      if (value === undefined) return "--url needs a value, e.g. --url http://127.0.0.1:9090";
      result.url = value;
    } else if (argument.startsWith("--url=")) result.url = argument.slice("--url=".length);
    else if (argument === "--help" || argument === "-h") return "";
    else return `unknown argument ${argument}`;
  }
  result.url = result.url.replace(/\/+$/, "");
  if (!/^https?:\/\//.test(result.url)) return `--url must start with http:// or https:// (got ${result.url})`;
  if ((result.certFile === null) !== (result.keyFile === null)) return "--cert and --key go together";
  return result;
}

/** The TLS options for an https:// admin address (a private CA, a client certificate, or no verification). */
async function tlsOptions(parsed: Arguments): Promise<TLSOptions> {
  const read = (path: string | null) => (path === null ? undefined : Bun.file(path).text());
  const [ca, cert, key] = await Promise.all([read(parsed.caFile), read(parsed.certFile), read(parsed.keyFile)]);
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert, key }),
    ...(parsed.isInsecure ? { rejectUnauthorized: false } : {}),
  };
}

async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseArguments(argv);
  if (typeof parsed === "string") {
    if (parsed !== "") process.stderr.write(`stats: ${parsed}\n`);
    process.stderr.write(USAGE);
    return parsed === "" ? 0 : 2;
  }
  const statsUrl = `${parsed.url}/stats${parsed.isFleet ? "?scope=fleet" : ""}`;
  let tls: TLSOptions;
  try {
    tls = await tlsOptions(parsed);
  } catch (error) {
    process.stderr.write(`stats: cannot read a certificate file (${(error as Error).message})\n`);
    return 2;
  }
  let response: Response;
  try {
    response = await fetch(statsUrl, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), tls });
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
