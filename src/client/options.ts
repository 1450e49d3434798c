// Command line of `bun run load`: its flags (parsed by node:util parseArgs), their defaults and help, the target.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { TLSOptions } from "bun";
import { editDistance } from "../config/suggest.ts";
import { parseDuration } from "../config/units.ts";

/** Which wire protocol the target speaks, from the URL scheme. */
export type TargetProtocol = "http" | "echo" | "hps";

export interface LoadTarget {
  protocol: TargetProtocol;
  host: string;
  port: number;
  /** HTTP only: path with query, e.g. "/index.html?x=1". */
  path: string;
  /** https:// (HTTP over TLS). */
  tls: boolean;
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
  /** The run fails (exit 1) when errors.total exceeds this share of the attempts, in percent (0-100). */
  maxErrorRatePercent: number;
  json: boolean;
  progress: boolean;
  /** https://: Bun's TLS client options (--cacert, --cert/--key, --insecure); null for plain targets. */
  tls: TLSOptions | null;
  /** --http2: HTTP/2 through Bun's fetch (fetch-engine.ts) instead of HTTP/1.1 on raw sockets. */
  http2: boolean;
}

/** A command line that cannot run; the message names the flag and the fix. */
export class LoadUsageError extends Error {}

const OPCODES: Record<string, number> = { ping: 0x00, echo: 0x01, hash: 0x02, stats: 0x03 };

/** Defaults of the flags: the one place they live (the usage text quotes them). */
const DEFAULTS = {
  connections: 10,
  pipeline: 1,
  durationMs: 10_000,
  threads: 1,
  warmupMs: 0,
  timeoutMs: 10_000,
  method: "GET",
  sizeBytes: 64,
  opcode: "ping",
  maxErrorRatePercent: 0,
} as const;

interface FlagSpec {
  short?: string;
  /** Placeholder of the flag's value in the usage text; a flag without one is a boolean switch. */
  value?: string;
  repeatable?: boolean;
  /** One line per element in the usage text. */
  help: readonly string[];
}

/** Every flag, in usage order. parseArgs options and the usage text are both derived from this table. */
const FLAGS = {
  connections: { short: "c", value: "N", help: [`connections (default ${DEFAULTS.connections})`] },
  pipeline: { short: "p", value: "N", help: [`requests in flight per connection (default ${DEFAULTS.pipeline})`] },
  duration: {
    short: "d",
    value: "T",
    help: [`measured duration, e.g. 10s, 500ms, 1m30s (default ${DEFAULTS.durationMs / 1000}s unless -n)`],
  },
  requests: { short: "n", value: "N", help: ["exact number of measured requests, then stop"] },
  rate: {
    short: "R",
    value: "R",
    help: [
      "open model: R requests/s on a fixed schedule, latency corrected",
      "for coordinated omission (default: closed model)",
    ],
  },
  threads: {
    short: "t",
    value: "N",
    help: [`Bun Workers, each with its share of connections (default ${DEFAULTS.threads})`],
  },
  warmup: { short: "w", value: "T", help: [`unrecorded warm-up before measuring (default ${DEFAULTS.warmupMs}s)`] },
  timeout: { value: "T", help: [`per-request timeout (default ${DEFAULTS.timeoutMs / 1000}s)`] },
  method: { short: "m", value: "M", help: [`HTTP method (default ${DEFAULTS.method})`] },
  header: { short: "H", value: '"K: V"', repeatable: true, help: ["extra HTTP request header (repeatable)"] },
  body: { short: "b", value: "S", help: ["HTTP request body"] },
  size: { short: "s", value: "N", help: [`echo message / hps payload bytes (default ${DEFAULTS.sizeBytes})`] },
  opcode: {
    value: "O",
    help: [`hps opcode: ping, echo, hash, stats or a number (default ${DEFAULTS.opcode})`],
  },
  "max-error-rate": {
    value: "P",
    help: [
      `fail (exit 1) when more than P % of the attempts are errors, non-2xx`,
      `or non-OK answers included (default ${DEFAULTS.maxErrorRatePercent}: any error fails the run)`,
    ],
  },
  http2: { help: ["https:// only: HTTP/2 through Bun's fetch; -c x -p requests in flight (closed model)"] },
  cacert: { value: "FILE", help: ["https:// only: PEM file of the CA that signed the server's certificate"] },
  cert: { value: "FILE", help: ["https:// only: client certificate (PEM), with --key"] },
  key: { value: "FILE", help: ["https:// only: the client certificate's private key (PEM)"] },
  insecure: { help: ["https:// only: do not verify the server's certificate"] },
  json: { help: ["print the result as JSON on stdout instead of the table"] },
  progress: { help: ["print the per-second progress line even when stderr is not a TTY"] },
  help: { short: "h", help: ["this text"] },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;
type FlagValue<S> = S extends { value: string } ? (S extends { repeatable: true } ? string[] : string) : boolean;
type FlagValues = { [K in FlagName]?: FlagValue<(typeof FLAGS)[K]> };

const PARSE_OPTIONS = Object.fromEntries(
  Object.entries(FLAGS).map(([name, spec]: [string, FlagSpec]) => {
    const option: { type: "string" | "boolean"; short?: string; multiple?: boolean } = {
      type: spec.value === undefined ? "boolean" : "string",
    };
    // parseArgs rejects `short: undefined`: only set what the flag has
    if (spec.short !== undefined) option.short = spec.short;
    if (spec.repeatable === true) option.multiple = true;
    return [name, option];
  }),
);

function flagLabel(name: string, spec: FlagSpec): string {
  const long = `--${name}${spec.value === undefined ? "" : ` ${spec.value}`}`;
  return spec.short === undefined ? `    ${long}` : `-${spec.short}, ${long}`;
}

function usageFlags(): string {
  const entries = Object.entries(FLAGS) as [string, FlagSpec][];
  const width = Math.max(...entries.map(([name, spec]) => flagLabel(name, spec).length)) + 3;
  const lines: string[] = [];
  for (const [name, spec] of entries) {
    spec.help.forEach((text, i) => {
      lines.push(`  ${(i === 0 ? flagLabel(name, spec) : "").padEnd(width)}${text}`);
    });
  }
  return lines.join("\n");
}

export const LOAD_USAGE = `Usage: bun run load [flags] <target>

Targets:
  http://host:port/path     HTTP/1.1 keep-alive GET (or -m) over raw sockets
  https://host:port/path    the same over TLS (verified against the system CAs, or --cacert); --http2 for HTTP/2
  echo://host:port          raw TCP echo: send --size bytes, expect them back
  hps://host:port           HPS/1 frames: --opcode with a --size byte payload

Flags (a value may also follow "=": --rate=500, -c8):
${usageFlags()}

Exit status: 0 the run met --max-error-rate; 1 it did not, or it could not run (e.g. no connection);
2 the command line is wrong.
`;

/**
 * "10s", "250ms", "1m", "1h30m" (the forms the server's settings take, src/config/units.ts), or a plain number of
 * seconds ("1.5") -> milliseconds.
 */
export function parseDurationMs(text: string, flag: string): number {
  const plainSeconds = /^\s*\d+(?:\.\d+)?\s*$/.test(text);
  const ms = plainSeconds ? Number(text) * 1000 : parseDuration(text, "milliseconds");
  if (!(ms >= 0)) throw new LoadUsageError(`${flag}: expected a duration like 10s, 500ms or 1m (got "${text}")`);
  return ms;
}

function parseCount(text: string, flag: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || text.trim() === "")
    throw new LoadUsageError(`${flag}: expected an integer >= ${min} (got "${text}")`);
  return value;
}

/** "0", "0.5", "5%" -> percent in 0..100. */
function parsePercent(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*%?$/.exec(text.trim());
  const value = match ? Number(match[1]) : Number.NaN;
  if (!(value >= 0 && value <= 100))
    throw new LoadUsageError(`${flag}: expected a percentage from 0 to 100, e.g. 0, 0.5 or 1% (got "${text}")`);
  return value;
}

function parseOpcode(text: string, flag: string): number {
  const lower = text.toLowerCase();
  const opcode = OPCODES[lower] ?? (lower.trim() === "" ? Number.NaN : Number(lower));
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 255)
    throw new LoadUsageError(`${flag}: expected ping, echo, hash, stats or 0-255 (got "${text}")`);
  return opcode;
}

function parseHeader(text: string, flag: string): [string, string] {
  const colon = text.indexOf(":");
  if (colon <= 0 || /[\r\n]/.test(text)) throw new LoadUsageError(`${flag}: expected "Name: value" (got "${text}")`);
  return [text.slice(0, colon).trim(), text.slice(colon + 1).trim()];
}

export function parseTarget(url: string): LoadTarget {
  const match = /^(https?|echo|hps):\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/.exec(url);
  if (!match)
    throw new LoadUsageError(
      `target: expected http(s)://host:port/path, echo://host:port or hps://host:port (got "${url}")`,
    );
  const tls = match[1] === "https";
  const protocol = (tls ? "http" : match[1]) as TargetProtocol;
  const rawHost = match[2]!;
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (match[3] === undefined && protocol !== "http")
    throw new LoadUsageError(`target: ${protocol}:// needs a port (got "${url}")`);
  const port = match[3] === undefined ? (tls ? 443 : 80) : Number(match[3]);
  if (!(port > 0 && port < 65536)) throw new LoadUsageError(`target: port must be 1-65535 (got "${url}")`);
  return { protocol, host, port, path: match[4] ?? "/", url, tls };
}

/** Bun's TLS client options from --cacert, --cert/--key and --insecure (files read now: a missing one is a usage error). */
function tlsOptions(values: FlagValues, host: string, flag: (name: FlagName) => string): TLSOptions {
  const read = (name: "cacert" | "cert" | "key"): string | undefined => {
    const path = values[name];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (error) {
      throw new LoadUsageError(`${flag(name)}: cannot read "${path}" (${(error as Error).message})`);
    }
  };
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new LoadUsageError(`${flag(values.cert === undefined ? "key" : "cert")}: --cert and --key go together`);
  }
  const ca = read("cacert");
  const cert = read("cert");
  const key = read("key");
  return {
    serverName: host,
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert, key }),
    ...(values.insecure === true ? { rejectUnauthorized: false } : {}),
  };
}

/** parseArgs' errors, said the way the rest of this tool says them. */
function usageError(error: unknown): LoadUsageError {
  const { code, message } = error as { code?: string; message: string };
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const flag = quoted.startsWith("-") ? quoted : `-${quoted}`;
    const name = flag.replace(/^-+/, "");
    const [closest] = Object.keys(FLAGS)
      .map((known) => [known, editDistance(name, known)] as const)
      .sort((a, b) => a[1] - b[1]);
    const hint = closest !== undefined && name.length > 1 && closest[1] <= 2 ? `; did you mean --${closest[0]}?` : "";
    return new LoadUsageError(`unknown flag ${flag}${hint}`);
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && message.endsWith("argument missing")) {
    return new LoadUsageError(`${quoted.replace(/ <value>$/, "")}: missing value`);
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && message.includes("ambiguous")) {
    const entry = (Object.entries(FLAGS) as [string, FlagSpec][]).find(([, spec]) => `-${spec.short}` === quoted);
    const long = entry === undefined ? quoted : `--${entry[0]}`;
    return new LoadUsageError(
      `${quoted}: missing value (the next argument is a flag; a value starting with "-" is written ${long}=-VALUE)`,
    );
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && message.endsWith("does not take an argument")) {
    return new LoadUsageError(`${quoted}: takes no value`);
  }
  return new LoadUsageError(message.replace(/\s*\n\s*/g, " "));
}

/** Parses argv (without "bun" and the script). Returns null when help was asked for. */
export function parseLoadArgs(argv: readonly string[]): LoadOptions | null {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: true, tokens: true });
  } catch (error) {
    throw usageError(error);
  }
  // parseArgs types its values from the options' literal types, which the derived PARSE_OPTIONS no longer carries
  const values = parsed.values as FlagValues;
  if (values.help === true) return null;
  // errors name a flag the way it was typed (-c or --connections)
  const typed = new Map<string, string>();
  for (const token of parsed.tokens ?? []) if (token.kind === "option") typed.set(token.name, token.rawName);
  const flag = (name: FlagName): string => typed.get(name) ?? `--${name}`;

  if (parsed.positionals.length === 0) throw new LoadUsageError("missing target URL");
  if (parsed.positionals.length > 1)
    throw new LoadUsageError(`one target only (got ${parsed.positionals.map((p) => `"${p}"`).join(" and ")})`);
  const target = parseTarget(parsed.positionals[0]!);
  const count = (name: FlagName, text: string | undefined, fallback: number, min: number): number =>
    text === undefined ? fallback : parseCount(text, flag(name), min);
  const duration = (name: FlagName, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const ms = parseDurationMs(text, flag(name));
    if (ms <= 0 && name !== "warmup") throw new LoadUsageError(`${flag(name)}: must be more than 0`);
    return ms;
  };

  const totalRequests = values.requests === undefined ? null : parseCount(values.requests, flag("requests"), 1);
  let ratePerSecond: number | null = null;
  if (values.rate !== undefined) {
    ratePerSecond = Number(values.rate);
    if (!(ratePerSecond > 0 && Number.isFinite(ratePerSecond)))
      throw new LoadUsageError(`${flag("rate")}: expected requests per second > 0 (got "${values.rate}")`);
  }
  const method = (values.method ?? DEFAULTS.method).toUpperCase();
  if (!/^[A-Z]+$/.test(method))
    throw new LoadUsageError(`${flag("method")}: expected a method like GET (got "${method}")`);
  const options: LoadOptions = {
    target,
    connections: count("connections", values.connections, DEFAULTS.connections, 1),
    pipeline: count("pipeline", values.pipeline, DEFAULTS.pipeline, 1),
    durationMs:
      values.duration === undefined && totalRequests !== null
        ? null
        : duration("duration", values.duration, DEFAULTS.durationMs),
    totalRequests,
    ratePerSecond,
    threads: count("threads", values.threads, DEFAULTS.threads, 1),
    warmupMs: duration("warmup", values.warmup, DEFAULTS.warmupMs),
    timeoutMs: duration("timeout", values.timeout, DEFAULTS.timeoutMs),
    method,
    headers: (values.header ?? []).map((text) => parseHeader(text, flag("header"))),
    body: values.body ?? "",
    sizeBytes: count("size", values.size, DEFAULTS.sizeBytes, 0),
    opcode: parseOpcode(values.opcode ?? DEFAULTS.opcode, flag("opcode")),
    maxErrorRatePercent:
      values["max-error-rate"] === undefined
        ? DEFAULTS.maxErrorRatePercent
        : parsePercent(values["max-error-rate"], flag("max-error-rate")),
    json: values.json === true,
    progress: values.progress === true,
    tls: target.tls ? tlsOptions(values, target.host, flag) : null,
    http2: values.http2 === true,
  };
  if (!target.tls) {
    const tlsFlag = (["http2", "cacert", "cert", "key", "insecure"] as const).find(
      (name) => values[name] !== undefined,
    );
    if (tlsFlag !== undefined) throw new LoadUsageError(`${flag(tlsFlag)}: needs an https:// target`);
  }
  if (options.http2 && options.ratePerSecond !== null) {
    throw new LoadUsageError(`${flag("http2")}: the open model (${flag("rate")}) is not available over HTTP/2`);
  }
  if (options.threads > options.connections) {
    throw new LoadUsageError(
      `${flag("threads")} ${options.threads} needs at least as many connections (${flag("connections")} ${options.connections})`,
    );
  }
  if (target.protocol === "echo" && options.sizeBytes < 1)
    throw new LoadUsageError(`${flag("size")}: echo messages need at least 1 byte`);
  return options;
}
