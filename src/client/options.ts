// Command line of `bun run load`: flags, their defaults (the one place they live) and the parsed target.

/** Which wire protocol the target speaks, from the URL scheme. */
export type TargetProtocol = "http" | "echo" | "hps";

export interface LoadTarget {
  protocol: TargetProtocol;
  host: string;
  port: number;
  /** HTTP only: path with query, e.g. "/index.html?x=1". */
  path: string;
  /** The URL as given, for the report. */
  url: string;
}

export interface LoadOptions {
  target: LoadTarget;
  connections: number;
  /** Requests in flight per connection (closed model), or the cap on in-flight requests per connection (open model). */
  pipeline: number;
  /** Measured duration; null in -n mode without -d. */
  durationMs: number | null;
  /** Total measured requests (-n); null in duration mode. */
  totalRequests: number | null;
  /** Open model target rate over all connections and threads; null = closed model. */
  ratePerSecond: number | null;
  threads: number;
  warmupMs: number;
  /** A request with no response after this long is counted as a timeout and its connection is reopened. */
  timeoutMs: number;
  method: string;
  headers: [string, string][];
  body: string;
  /** echo: bytes per message; hps: payload bytes per request. */
  sizeBytes: number;
  /** hps: opcode of every request. */
  opcode: number;
  json: boolean;
  progress: boolean;
}

/** A command line that cannot run; the message names the flag and the fix. */
export class LoadUsageError extends Error {}

export const LOAD_USAGE = `Usage: bun run load [flags] <target>

Targets:
  http://host:port/path     HTTP/1.1 keep-alive GET (or -m) over raw sockets
  echo://host:port          raw TCP echo: send --size bytes, expect them back
  hps://host:port           HPS/1 frames: --opcode with a --size byte payload

Flags:
  -c, --connections N   connections (default 10)
  -p, --pipeline N      requests in flight per connection (default 1)
  -d, --duration T      measured duration, e.g. 10s, 500ms, 1m (default 10s unless -n)
  -n, --requests N      exact number of measured requests, then stop
  -R, --rate R          open model: R requests/s on a fixed schedule, latency corrected
                        for coordinated omission (default: closed model)
  -t, --threads T       Bun Workers, each with its share of connections (default 1)
  -w, --warmup T        unrecorded warm-up before measuring (default 0s)
      --timeout T       per-request timeout (default 10s)
  -m, --method M        HTTP method (default GET)
  -H, --header "K: V"   extra HTTP request header (repeatable)
  -b, --body S          HTTP request body
  -s, --size N          echo message / hps payload bytes (default 64)
      --opcode O        hps opcode: ping, echo, hash, stats or a number (default ping)
      --json            print the result as JSON on stdout instead of the table
      --progress        print the per-second progress line even when stderr is not a TTY
  -h, --help            this text
`;

const OPCODES: Record<string, number> = { ping: 0x00, echo: 0x01, hash: 0x02, stats: 0x03 };

/** "10s", "250ms", "1m", "1.5" (seconds) -> milliseconds. */
export function parseDurationMs(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) throw new LoadUsageError(`${flag}: expected a duration like 10s, 500ms or 1m (got "${text}")`);
  const value = Number(match[1]);
  const unit = match[2] ?? "s";
  const factor = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000;
  return value * factor;
}

function parseCount(text: string, flag: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min)
    throw new LoadUsageError(`${flag}: expected an integer >= ${min} (got "${text}")`);
  return value;
}

export function parseTarget(url: string): LoadTarget {
  const match = /^(http|echo|hps):\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/.exec(url);
  if (!match)
    throw new LoadUsageError(
      `target: expected http://host:port/path, echo://host:port or hps://host:port (got "${url}")`,
    );
  const protocol = match[1] as TargetProtocol;
  const rawHost = match[2]!;
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (match[3] === undefined && protocol !== "http")
    throw new LoadUsageError(`target: ${protocol}:// needs a port (got "${url}")`);
  const port = match[3] === undefined ? 80 : Number(match[3]);
  if (!(port > 0 && port < 65536)) throw new LoadUsageError(`target: port must be 1-65535 (got "${url}")`);
  return { protocol, host, port, path: match[4] ?? "/", url };
}

/** Parses argv (without "bun" and the script). Returns null when help was asked for. */
export function parseLoadArgs(argv: readonly string[]): LoadOptions | null {
  let url: string | null = null;
  const options: Omit<LoadOptions, "target"> = {
    connections: 10,
    pipeline: 1,
    durationMs: null,
    totalRequests: null,
    ratePerSecond: null,
    threads: 1,
    warmupMs: 0,
    timeoutMs: 10_000,
    method: "GET",
    headers: [],
    body: "",
    sizeBytes: 64,
    opcode: OPCODES.ping!,
    json: false,
    progress: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const value = (): string => {
      if (eq > 0) return raw.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new LoadUsageError(`${flag}: missing value`);
      return next;
    };
    switch (flag) {
      case "-h":
      case "--help":
        return null;
      case "-c":
      case "--connections":
        options.connections = parseCount(value(), flag, 1);
        break;
      case "-p":
      case "--pipeline":
        options.pipeline = parseCount(value(), flag, 1);
        break;
      case "-d":
      case "--duration":
        options.durationMs = parseDurationMs(value(), flag);
        if (options.durationMs <= 0) throw new LoadUsageError(`${flag}: must be more than 0`);
        break;
      case "-n":
      case "--requests":
        options.totalRequests = parseCount(value(), flag, 1);
        break;
      case "-R":
      case "--rate": {
        const text = value();
        const rate = Number(text);
        if (!(rate > 0)) throw new LoadUsageError(`${flag}: expected requests per second > 0 (got "${text}")`);
        options.ratePerSecond = rate;
        break;
      }
      case "-t":
      case "--threads":
        options.threads = parseCount(value(), flag, 1);
        break;
      case "-w":
      case "--warmup":
        options.warmupMs = parseDurationMs(value(), flag);
        break;
      case "--timeout":
        options.timeoutMs = parseDurationMs(value(), flag);
        if (options.timeoutMs <= 0) throw new LoadUsageError(`${flag}: must be more than 0`);
        break;
      case "-m":
      case "--method":
        options.method = value().toUpperCase();
        if (!/^[A-Z]+$/.test(options.method))
          throw new LoadUsageError(`${flag}: expected a method like GET (got "${options.method}")`);
        break;
      case "-H":
      case "--header": {
        const text = value();
        const colon = text.indexOf(":");
        if (colon <= 0 || /[\r\n]/.test(text))
          throw new LoadUsageError(`${flag}: expected "Name: value" (got "${text}")`);
        options.headers.push([text.slice(0, colon).trim(), text.slice(colon + 1).trim()]);
        break;
      }
      case "-b":
      case "--body":
        options.body = value();
        break;
      case "-s":
      case "--size":
        options.sizeBytes = parseCount(value(), flag, 0);
        break;
      case "--opcode": {
        const text = value().toLowerCase();
        const named = OPCODES[text];
        const opcode = named ?? Number(text);
        if (!Number.isInteger(opcode) || opcode < 0 || opcode > 255) {
          throw new LoadUsageError(`${flag}: expected ping, echo, hash, stats or 0-255 (got "${text}")`);
        }
        options.opcode = opcode;
        break;
      }
      case "--json":
        options.json = true;
        break;
      case "--progress":
        options.progress = true;
        break;
      default:
        if (flag.startsWith("-")) throw new LoadUsageError(`unknown flag ${flag} (see --help)`);
        if (url !== null) throw new LoadUsageError(`one target only (got "${url}" and "${flag}")`);
        url = flag;
    }
  }
  if (url === null) throw new LoadUsageError("missing target URL (see --help)");
  const target = parseTarget(url);
  if (options.durationMs === null && options.totalRequests === null) options.durationMs = 10_000;
  if (options.threads > options.connections) {
    throw new LoadUsageError(
      `--threads ${options.threads} needs at least as many connections (-c ${options.connections})`,
    );
  }
  if (target.protocol === "echo" && options.sizeBytes < 1)
    throw new LoadUsageError("--size: echo messages need at least 1 byte");
  return { target, ...options };
}
