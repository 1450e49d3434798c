// `bun run bench:e2e`: hps in each protocol against its baselines, pinned, alternated in rounds; one markdown table and a JSON file.
import { mkdtempSync, rmSync, writeFileSync, chmodSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drive, median, type DriverPlan, type Measurement, type RunLength, type Unit } from "./drivers.ts";
import { ensurePackages, freePorts, runTool, stopAll, stopChildrenOnSignals, type Child } from "./process.ts";
import {
  makeBenchCertificate,
  NGINX_BIN,
  SERVERS,
  TLS_SERVERS,
  writeHttpFiles,
  type BenchEnv,
  type ServerName,
} from "./servers.ts";
import { PROXY_LARGE_FILE, isProxyServer, startProxyBackends } from "./proxy-servers.ts";
import { parseToolArgs } from "../cli.ts";

const USAGE = `Usage: bun run bench:e2e [options]

Starts hps (http, echo, custom) and its baselines pinned to one core, drives them from the other,
alternates them for several rounds and prints one markdown table (median, min–max, ratio).

Options:
  --rounds N         rounds per case (default 3)
  --seconds S        measured seconds per run (default 5)
  --warmup S         unrecorded warm-up seconds before each run (default 1)
  --only REGEX       run only the cases whose id matches (e.g. http-1k, "echo|custom")
  --json PATH        where to write the results (default bench/e2e/results.json)
  --server-core N    core for the servers (default 0)
  --client-core N    core for wrk / the load tester (default 1)
  --no-pin           do not pin (for machines with one core; the numbers then measure the scheduler)
  --list             print the cases and exit
  -h, --help         this text
`;

export interface CaseSpec {
  id: string;
  title: string;
  unit: Unit;
  hps: ServerName;
  baselines: ServerName[];
  plan: DriverPlan;
  /** A baseline driven differently (the same server over another protocol); others get `plan`. */
  baselinePlans?: Partial<Record<ServerName, DriverPlan>>;
}

const KiB = 1024;

export const CASES: CaseSpec[] = [
  {
    id: "http-1k",
    title: "HTTP GET 1 KiB file, 64 conns",
    unit: "req/s",
    hps: "hps-http",
    baselines: ["nginx", "bun-http-static", "bun-http-file", "bun-http-clone", "hps-http-static-routes"],
    plan: { kind: "wrk", path: "/1k.bin", connections: 64, pipeline: 1, unit: "req/s", minBodyBytes: KiB },
  },
  {
    id: "http-64k",
    title: "HTTP GET 64 KiB file, 64 conns",
    unit: "req/s",
    hps: "hps-http",
    baselines: ["nginx", "bun-http-static", "bun-http-file", "bun-http-clone", "hps-http-static-routes"],
    plan: { kind: "wrk", path: "/64k.bin", connections: 64, pipeline: 1, unit: "req/s", minBodyBytes: 64 * KiB },
  },
  {
    id: "http-256m",
    title: "HTTP GET 256 MiB file, 4 conns",
    unit: "GB/s",
    hps: "hps-http",
    baselines: ["nginx", "bun-http-static", "bun-http-file"],
    plan: { kind: "wrk", path: "/256m.bin", connections: 4, pipeline: 1, unit: "GB/s", minBodyBytes: 256 * KiB * KiB },
  },
  {
    // wrk reads 8 KiB per system call, so on 256 MiB bodies the case above can measure wrk rather than the server;
    // bun run load reads much larger chunks. The load-generator check table printed below shows each one's CPU.
    id: "http-256m-load",
    title: "HTTP GET 256 MiB file, 4 conns, read by bun run load",
    unit: "GB/s",
    hps: "hps-http",
    baselines: ["nginx", "bun-http-static", "bun-http-file"],
    plan: {
      kind: "load",
      scheme: "http",
      path: "/256m.bin",
      connections: 4,
      pipeline: 1,
      sizeBytes: 0,
      opcode: null,
      unit: "GB/s",
    },
  },
  {
    id: "http-1k-pipelined",
    title: "HTTP GET 1 KiB pipelined ×16, 64 conns",
    unit: "req/s",
    hps: "hps-http",
    // nginx with sendfile + tcp_nopush stalls under pipelining; its two better configurations are the real comparison.
    baselines: [
      "nginx-nopush-off",
      "nginx-sendfile-off",
      "nginx",
      "bun-http-static",
      "bun-http-clone",
      "hps-http-static-routes",
    ],
    plan: { kind: "wrk", path: "/1k.bin", connections: 64, pipeline: 16, unit: "req/s", minBodyBytes: KiB },
  },
  {
    // Issue 6's figure: what the admission check costs on the cheapest request (the limit is never reached).
    id: "http-1k-rate-limited",
    title: "HTTP GET 1 KiB file, 64 conns, rate limiting on vs off",
    unit: "req/s",
    hps: "hps-http-rate-limited",
    baselines: ["hps-http"],
    plan: { kind: "wrk", path: "/1k.bin", connections: 64, pipeline: 1, unit: "req/s", minBodyBytes: KiB },
  },
  {
    // One client address, so one hot lease: the cost of the shared limiter on the request path (docs/fleet.md).
    id: "http-1k-fleet",
    title: "HTTP GET 1 KiB file, 64 conns, rate limit shared through Redis vs this instance's own",
    unit: "req/s",
    hps: "hps-http-fleet-limited",
    baselines: ["hps-http-rate-limited"],
    plan: { kind: "wrk", path: "/1k.bin", connections: 64, pipeline: 1, unit: "req/s", minBodyBytes: KiB },
  },
  {
    // Issue 15: HTTPS with keep-alive (wrk resumes nothing after the first handshake of each connection).
    id: "https-1k",
    title: "HTTPS GET 1 KiB file, 64 conns (HTTP/1.1 keep-alive)",
    unit: "req/s",
    hps: "hps-https",
    baselines: ["nginx-https", "bun-https-static", "hps-https-static-routes"],
    plan: {
      kind: "wrk",
      scheme: "https",
      path: "/1k.bin",
      connections: 64,
      pipeline: 1,
      unit: "req/s",
      minBodyBytes: KiB,
    },
  },
  {
    // Full handshakes: openssl s_time -new starts a new session each time (no ticket, no session id).
    id: "tls-handshakes",
    title: "TLS full handshakes (no resumption), 32 clients at a time",
    unit: "handshakes/s",
    hps: "hps-https",
    baselines: ["nginx-https", "bun-https-static"],
    plan: { kind: "handshakes", processes: 32, unit: "handshakes/s" },
  },
  {
    id: "h2-1k",
    title: "HTTP/2 GET 1 KiB file, 10 conns × 10 streams (h2load)",
    unit: "req/s",
    hps: "hps-https",
    baselines: ["nginx-https", "bun-https-static", "hps-https-static-routes"],
    plan: { kind: "h2load", path: "/1k.bin", connections: 10, streams: 10, unit: "req/s", minBodyBytes: KiB },
  },
  {
    // Bun's fetch is the one client here that speaks HTTP/3; the same client over HTTP/2 is the comparison.
    id: "h3-1k",
    title: "HTTP/3 vs HTTP/2 GET 1 KiB, 100 requests in flight (Bun's fetch)",
    unit: "req/s",
    hps: "hps-https-h3",
    baselines: ["hps-https-h3-tcp"],
    plan: { kind: "fetch", protocol: "http3", path: "/1k.bin", inFlight: 100, unit: "req/s", minBodyBytes: KiB },
    baselinePlans: {
      "hps-https-h3-tcp": {
        kind: "fetch",
        protocol: "http2",
        path: "/1k.bin",
        inFlight: 100,
        unit: "req/s",
        minBodyBytes: KiB,
      },
    },
  },
  {
    id: "echo-pingpong",
    title: "echo 64 B ping-pong, 64 conns",
    unit: "round trips/s",
    hps: "hps-echo",
    baselines: ["bun-echo"],
    plan: {
      kind: "load",
      scheme: "echo",
      connections: 64,
      pipeline: 1,
      sizeBytes: 64,
      opcode: null,
      unit: "round trips/s",
    },
  },
  {
    id: "echo-stream",
    title: "echo 64 KiB chunks streamed (8 in flight), 8 conns",
    unit: "MB/s",
    hps: "hps-echo",
    baselines: ["bun-echo"],
    plan: {
      kind: "load",
      scheme: "echo",
      connections: 8,
      pipeline: 8,
      sizeBytes: 64 * KiB,
      opcode: null,
      unit: "MB/s",
    },
  },
  {
    // How tcp.write_high_water_bytes was chosen: the same stream with the default (1 MiB, above the 512 KiB each
    // connection has in flight, so flow control never pauses it) against lower marks that do pause it.
    id: "echo-stream-high-water",
    title:
      "echo 64 KiB chunks streamed (8 in flight), 8 conns: write high-water mark default (1 MiB) vs 64 and 256 KiB",
    unit: "MB/s",
    hps: "hps-echo",
    baselines: ["hps-echo-hwm-64k", "hps-echo-hwm-256k", "bun-echo"],
    plan: {
      kind: "load",
      scheme: "echo",
      connections: 8,
      pipeline: 8,
      sizeBytes: 64 * KiB,
      opcode: null,
      unit: "MB/s",
    },
  },
  {
    // Issue 16: the reverse proxy's per-request cost, both proxies in front of the same nginx backend.
    id: "proxy-hello",
    title: "HTTP proxy, 5-byte responses, 64 conns (keep-alive both sides)",
    unit: "req/s",
    hps: "hps-proxy",
    baselines: ["nginx-proxy", "bun-proxy"],
    plan: { kind: "wrk", path: "/hello", connections: 64, pipeline: 1, unit: "req/s", minBodyBytes: 5 },
  },
  {
    id: "proxy-64m",
    title: "HTTP proxy, 64 MiB responses, 4 conns, read by bun run load",
    unit: "GB/s",
    hps: "hps-proxy",
    baselines: ["nginx-proxy", "nginx-proxy-unbuffered"],
    plan: {
      kind: "load",
      scheme: "http",
      path: `/${PROXY_LARGE_FILE.name}`,
      connections: 4,
      pipeline: 1,
      sizeBytes: 0,
      opcode: null,
      unit: "GB/s",
    },
  },
  {
    id: "tcp-proxy-stream",
    title: "TCP proxy to an echo, 64 KiB chunks streamed (8 in flight), 8 conns",
    unit: "MB/s",
    hps: "hps-tcp-proxy",
    baselines: ["nginx-stream"],
    plan: {
      kind: "load",
      scheme: "echo",
      connections: 8,
      pipeline: 8,
      sizeBytes: 64 * KiB,
      opcode: null,
      unit: "MB/s",
    },
  },
  {
    id: "custom-ping",
    title: "HPS/1 PING pipelined ×64, 16 conns",
    unit: "frames/s",
    hps: "hps-custom",
    // A PING response is byte-for-byte the request frame, so a raw echo is the ceiling for it.
    baselines: ["bun-echo"],
    plan: {
      kind: "load",
      scheme: "hps",
      connections: 16,
      pipeline: 64,
      sizeBytes: 0,
      opcode: "ping",
      unit: "frames/s",
    },
  },
  {
    id: "custom-hash",
    title: "HPS/1 HASH 64 B, 64 conns: pool vs inline",
    unit: "frames/s",
    hps: "hps-custom",
    baselines: ["hps-custom-inline"],
    plan: {
      kind: "load",
      scheme: "hps",
      connections: 64,
      pipeline: 1,
      sizeBytes: 64,
      opcode: "hash",
      unit: "frames/s",
    },
  },
];

interface VariantResult {
  server: ServerName;
  description: string;
  rounds: Measurement[];
  median: number;
  min: number;
  max: number;
  /** Median over rounds of value / server CPU fraction: the work done per second of server CPU. */
  perServerCpuSecond: number;
}

interface CaseResult {
  id: string;
  title: string;
  unit: Unit;
  variants: VariantResult[];
  /** hps median / baseline median, per baseline. */
  ratios: Partial<Record<ServerName, number>>;
  /** The same ratio per second of server CPU (work done per CPU-second): steadier than wall-clock rates on shared cores. */
  cpuRatios: Partial<Record<ServerName, number>>;
  skipped: Partial<Record<ServerName, string>>;
}

/** Three significant digits, thousands separated: 182k → "182,345", 2.71 → "2.71". */
function formatValue(value: number): string {
  if (value >= 1000) return Math.round(value).toLocaleString("en-US");
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

async function machineDescription(): Promise<Record<string, string | number>> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown CPU";
  const nginxVersion = (await runTool([NGINX_BIN, "-v"], null, 5000)).stderr.trim();
  const wrkVersion = (await runTool(["wrk", "-v"], null, 5000)).stdout.trim().split("\n")[0] ?? "";
  const uname = (await runTool(["uname", "-sr"], null, 5000)).stdout.trim();
  return {
    cpu: model,
    cores: navigator.hardwareConcurrency,
    kernel: uname,
    bun: Bun.version,
    nginx: nginxVersion,
    wrk: wrkVersion,
  };
}

/** Runs the benchmark; resolves with the exit code (0 ok, 1 a run had errors, 2 bad command line). */
export async function e2eMain(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("bench:e2e", USAGE, {
    args: argv,
    options: {
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      only: { type: "string" },
      json: { type: "string", default: "bench/e2e/results.json" },
      "server-core": { type: "string", default: "0" },
      "client-core": { type: "string", default: "1" },
      "no-pin": { type: "boolean", default: false },
      list: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const rounds = Number(args.rounds);
  const seconds = Number(args.seconds);
  const warmupSeconds = Number(args.warmup);
  if (!(Number.isInteger(rounds) && rounds >= 1) || !(seconds > 0) || !(warmupSeconds >= 0)) {
    process.stderr.write("bench:e2e: --rounds must be an integer ≥ 1, --seconds > 0, --warmup ≥ 0\n");
    return 2;
  }
  const only = args.only === undefined ? null : new RegExp(args.only, "i");
  const cases = CASES.filter((spec) => only === null || only.test(spec.id));
  if (args.list) {
    for (const spec of CASES)
      process.stdout.write(
        `${spec.id.padEnd(20)} ${spec.title} — hps: ${spec.hps}; baselines: ${spec.baselines.join(", ")}\n`,
      );
    return 0;
  }
  if (cases.length === 0) {
    process.stderr.write(`bench:e2e: no case matches --only ${args.only}; --list shows them\n`);
    return 2;
  }
  const pin = !args["no-pin"];
  const length: RunLength = { seconds, warmupSeconds, clientCore: pin ? Number(args["client-core"]) : null };
  const serverCore = pin ? Number(args["server-core"]) : null;
  if (pin && navigator.hardwareConcurrency < 2) {
    process.stderr.write("bench:e2e: needs 2 cores to pin server and client apart; use --no-pin to run anyway\n");
    return 2;
  }

  const needsHttp = cases.some((spec) => spec.plan.kind !== "load" || spec.plan.scheme === "http");
  const needsTls = cases.some((spec) => [spec.hps, ...spec.baselines].some((name) => TLS_SERVERS.has(name)));
  await ensurePackages([
    ...(needsHttp
      ? [
          { command: "wrk", pkg: "wrk" },
          { command: "nginx", pkg: "nginx" },
        ]
      : []),
    ...(needsTls
      ? [
          { command: "openssl", pkg: "openssl" },
          { command: "h2load", pkg: "nghttp2-client" },
        ]
      : []),
  ]);

  const tempDir = mkdtempSync(join(tmpdir(), "hps-bench-"));
  // nginx workers run as another user: they must be able to reach the files.
  chmodSync(tempDir, 0o755);
  stopChildrenOnSignals();
  const cleanUp = async () => {
    await stopAll();
    rmSync(tempDir, { recursive: true, force: true });
  };
  try {
    const serverNames = [...new Set(cases.flatMap((spec) => [spec.hps, ...spec.baselines]))];
    const needsBackends = serverNames.some(isProxyServer);
    // One call, so no port is handed out twice: a public port per server, admin ports for the hps instances, then
    // the proxy cases' two backends.
    const allPorts = freePorts(serverNames.length * 2 + 2);
    const ports = new Map<ServerName, number>(serverNames.map((name, i) => [name, allPorts[i]!]));
    const env: BenchEnv = {
      tempDir,
      wwwDir: join(tempDir, "www"),
      serverCore,
      adminPorts: allPorts.slice(serverNames.length, serverNames.length * 2),
      helperCore: length.clientCore,
      tls: needsTls ? await makeBenchCertificate(tempDir) : null,
      backends: null,
    };
    if (needsHttp) await writeHttpFiles(env.wwwDir);
    if (needsBackends) {
      await writeHttpFiles(env.wwwDir, [PROXY_LARGE_FILE]);
      // On the load generator's core: the proxy's core serves the proxy alone.
      env.backends = await startProxyBackends(tempDir, env.wwwDir, length.clientCore, [
        allPorts[serverNames.length * 2]!,
        allPorts[serverNames.length * 2 + 1]!,
      ]);
    }

    const machine = await machineDescription();
    const totalRuns = cases.reduce((n, spec) => n + 1 + spec.baselines.length, 0) * rounds;
    process.stderr.write(
      `bench:e2e: ${cases.length} cases, ${rounds} rounds, ${warmupSeconds} s warm-up + ${seconds} s each ` +
        `(about ${Math.ceil((totalRuns * (seconds + warmupSeconds + 0.5)) / 60)} min); servers on core ${serverCore ?? "any"}, load on core ${length.clientCore ?? "any"}\n`,
    );

    // Servers start once, all idle but the one measured.
    const running = new Map<ServerName, Child>();
    const skipped = new Map<ServerName, string>();
    for (const name of serverNames) {
      const spec = SERVERS[name];
      if (spec.unavailable !== null) {
        skipped.set(name, spec.unavailable);
        process.stderr.write(`  skipping ${name}: ${spec.unavailable}\n`);
        continue;
      }
      running.set(name, await spec.start(env, ports.get(name)!));
    }

    const results: CaseResult[] = cases.map((spec) => ({
      id: spec.id,
      title: spec.title,
      unit: spec.unit,
      variants: [spec.hps, ...spec.baselines]
        .filter((name) => running.has(name))
        .map((name) => ({
          server: name,
          description: SERVERS[name].description,
          rounds: [],
          median: 0,
          min: 0,
          max: 0,
          perServerCpuSecond: 0,
        })),
      ratios: {},
      cpuRatios: {},
      skipped: Object.fromEntries(
        spec.baselines.filter((name) => skipped.has(name)).map((name) => [name, skipped.get(name)!]),
      ),
    }));

    for (let round = 0; round < rounds; round++) {
      for (const [index, spec] of cases.entries()) {
        const result = results[index]!;
        // Rotate the order each round so no server always runs first (or right after the slowest).
        const count = result.variants.length;
        for (let k = 0; k < count; k++) {
          const variant = result.variants[(k + round) % count]!;
          const child = running.get(variant.server)!;
          if (!child.isRunning) throw new Error(`${variant.server} died:\n${child.logTail()}`);
          const cpuBefore = child.cpuSeconds();
          const startedMs = performance.now();
          const plan = spec.baselinePlans?.[variant.server] ?? spec.plan;
          const measurement = await drive(plan, ports.get(variant.server)!, length);
          measurement.serverCpuPercent =
            (100 * (child.cpuSeconds() - cpuBefore)) / ((performance.now() - startedMs) / 1000);
          variant.rounds.push(measurement);
          process.stderr.write(
            `  round ${round + 1}/${rounds} ${spec.id.padEnd(18)} ${variant.server.padEnd(18)} ${formatValue(measurement.value).padStart(10)} ${spec.unit}` +
              `  client ${measurement.clientCpuPercent.toFixed(0)}% CPU, server ${measurement.serverCpuPercent.toFixed(0)}%` +
              (measurement.note === "" ? "" : `  (${measurement.note})`) +
              "\n",
          );
        }
      }
    }

    for (const result of results) {
      for (const variant of result.variants) {
        const values = variant.rounds.map((m) => m.value);
        variant.median = median(values);
        variant.min = Math.min(...values);
        variant.max = Math.max(...values);
        variant.perServerCpuSecond = median(
          variant.rounds.map((m) => (m.serverCpuPercent > 0 ? m.value / (m.serverCpuPercent / 100) : 0)),
        );
      }
      const hps = result.variants[0]!;
      for (const baseline of result.variants.slice(1)) {
        result.ratios[baseline.server] = baseline.median > 0 ? hps.median / baseline.median : 0;
        result.cpuRatios[baseline.server] =
          baseline.perServerCpuSecond > 0 ? hps.perServerCpuSecond / baseline.perServerCpuSecond : 0;
      }
    }

    const date = new Date().toISOString();
    const table = renderTable(results, { date, machine, rounds, seconds, warmupSeconds });
    process.stdout.write(`${table}\n`);
    const jsonPath = args.json;
    writeFileSync(
      jsonPath,
      `${JSON.stringify({ schema: "hps-bench-e2e/1", date, machine, rounds, seconds, warmupSeconds, serverCore, clientCore: length.clientCore, cases: results }, null, 2)}\n`,
    );
    process.stderr.write(`bench:e2e: results written to ${jsonPath}\n`);
    const failures = results.flatMap((r) =>
      r.variants.filter((v) => v.rounds.some((m) => m.errors > 0)).map((v) => `${r.id}/${v.server}`),
    );
    if (failures.length > 0)
      process.stderr.write(`bench:e2e: runs with errors (numbers suspect): ${failures.join(", ")}\n`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    await cleanUp();
  }
}

interface TableContext {
  date: string;
  machine: Record<string, string | number>;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
}

/** The results as markdown: the ratio table, then the load-generator check, then what each server is. */
export function renderTable(results: readonly CaseResult[], context: TableContext): string {
  const lines: string[] = [];
  const m = context.machine;
  lines.push(
    `hps end-to-end benchmark — ${context.date.slice(0, 10)}, ${m.cpu} (${m.cores} cores), ${m.kernel}, Bun ${m.bun}`,
  );
  lines.push(
    `Server pinned to one core, load generator to the other; ${context.rounds} alternating rounds of ${context.warmupSeconds} s warm-up + ${context.seconds} s; median (min–max).`,
  );
  lines.push("");
  lines.push(
    "| case | unit | hps | hps min–max | baseline | baseline median | baseline min–max | hps / baseline | per server CPU-s |",
  );
  lines.push("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
  for (const result of results) {
    const hps = result.variants[0];
    if (hps === undefined) continue;
    const baselines = result.variants.slice(1);
    const range = (v: VariantResult) => `${formatValue(v.min)}–${formatValue(v.max)}`;
    if (baselines.length === 0) {
      lines.push(
        `| ${result.title} | ${result.unit} | ${formatValue(hps.median)} | ${range(hps)} | – | – | – | – | – |`,
      );
    }
    for (const [i, baseline] of baselines.entries()) {
      const ratio = result.ratios[baseline.server] ?? 0;
      const cpuRatio = result.cpuRatios[baseline.server] ?? 0;
      const first = i === 0;
      lines.push(
        `| ${first ? result.title : ""} | ${first ? result.unit : ""} | ${first ? formatValue(hps.median) : ""} | ${first ? range(hps) : ""} | ` +
          `${baseline.server} | ${formatValue(baseline.median)} | ${range(baseline)} | ${ratio.toFixed(2)}× | ${cpuRatio.toFixed(2)}× |`,
      );
    }
    for (const [name, reason] of Object.entries(result.skipped))
      lines.push(`| | | | | ${name} | skipped: ${reason} | | | |`);
  }
  lines.push("");
  lines.push(
    "hps / baseline compares medians of the rate; per server CPU-s compares the work each server did per second of its own CPU (robust when other work shares the cores).",
  );
  lines.push("");
  lines.push(
    "Load generator check (median CPU % of one core over the rounds; a client near 100 % while the server is below it means the client limits the number):",
  );
  lines.push("");
  lines.push("| case | server | client CPU | server CPU | errors | command |");
  lines.push("| --- | --- | ---: | ---: | ---: | --- |");
  for (const result of results) {
    for (const variant of result.variants) {
      const client = median(variant.rounds.map((r) => r.clientCpuPercent));
      const server = median(variant.rounds.map((r) => r.serverCpuPercent));
      const errors = variant.rounds.reduce((n, r) => n + r.errors, 0);
      const flag = client >= 90 && server < 90 ? " ⚠ client-bound" : "";
      lines.push(
        `| ${result.id} | ${variant.server} | ${client.toFixed(0)}%${flag} | ${server.toFixed(0)}% | ${errors} | \`${variant.rounds[0]?.command.replace(/127\.0\.0\.1:\d+/, "127.0.0.1:PORT") ?? ""}\` |`,
      );
    }
  }
  const notes = results.flatMap((r) =>
    r.variants.flatMap((v) => v.rounds.filter((m) => m.note !== "").map((m) => `- ${r.id} / ${v.server}: ${m.note}`)),
  );
  if (notes.length > 0) {
    lines.push("");
    lines.push("Notes:");
    lines.push(...[...new Set(notes)]);
  }
  lines.push("");
  lines.push("Servers:");
  const seen = new Set<ServerName>();
  for (const result of results) {
    for (const variant of result.variants) {
      if (seen.has(variant.server)) continue;
      seen.add(variant.server);
      lines.push(`- ${variant.server}: ${variant.description}`);
    }
  }
  return lines.join("\n");
}

if (import.meta.main) {
  process.exitCode = await e2eMain(Bun.argv.slice(2));
}
