// `bun bench/e2e/cpu-per-request.ts`: server CPU time per request over a fixed number of requests, servers alternated.
//
// On a loaded machine a server's rate says how much of its core it got, not what a request costs it. This tool sends
// each server the same fixed number of requests (h2load -n) and reads the CPU time the server (all its threads, and
// nginx's workers) spent meanwhile from /proc/<pid>/task/*/schedstat (nanoseconds): CPU per request is what other
// tenants of the machine change least. Servers take turns round by round; the summary gives each one's median µs per
// request (min–max) and, per server, the ratio of the first server's cost to its cost (above 1: the first is cheaper).
//
//   bun bench/e2e/cpu-per-request.ts --load h2 --servers hps-https,nginx-https,bun-https-static [--rounds 5]
//   bun bench/e2e/cpu-per-request.ts --load proxy --servers hps-proxy,nginx-proxy,bun-proxy
//   --load h2           h2load -c10 -m10, 1 KiB over HTTP/2 (TLS, ALPN h2)
//   --load https        h2load --h1 -c64, 1 KiB over HTTPS/1.1 keep-alive
//   --load http         h2load --h1 -c64, 1 KiB over plain HTTP/1.1 keep-alive
//   --load handshakes   `--processes` × openssl s_time -new (a full TLS handshake per connection) for --seconds
//   --load proxy        h2load --h1 -c64, GET /hello through a reverse proxy to an nginx backend answering "hello"
//                       (bench/e2e/proxy-servers.ts; the backend runs on the client core): servers hps-proxy,
//                       nginx-proxy, bun-proxy
//   --b DIR             adds "hps-b": the first hps server of --servers, run from another checkout (src/main.ts there)
//   --set table.key=v   extra settings for every hps server of this checkout (repeatable)
import { readdirSync, readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseToolArgs } from "../cli.ts";
import { sTimeArgv } from "./drivers.ts";
import { freePorts, runTool, stopAll, stopChildrenOnSignals, type Child } from "./process.ts";
import { isProxyServer, startProxyBackends } from "./proxy-servers.ts";
import {
  makeBenchCertificate,
  SERVERS,
  TLS_SERVERS,
  writeHttpFiles,
  type BenchEnv,
  type ServerName,
} from "./servers.ts";

const USAGE = `Usage: bun bench/e2e/cpu-per-request.ts --load h2|https|http|proxy|handshakes --servers A,B,... [options]

Options:
  --requests N       requests per measured run (default 100000; handshakes: ignored, see --seconds)
  --warmup N         requests before each measured run, not counted (default 10000)
  --rounds N         rounds (default 5)
  --seconds S        handshakes: seconds per run (default 4)
  --processes N      handshakes: openssl s_time processes at once (default 8)
  --b DIR            also run the first hps server from the checkout DIR, as "hps-b"
  --set K=V          extra --set for the hps servers of this checkout (repeatable)
  --server-core N    (default 0)   --client-core N (default 1)
  -h, --help
`;

const KiB = 1024;

/** Nanoseconds of CPU the process's threads (and its children's: nginx's workers) have run, from schedstat. */
function cpuNanoseconds(pid: number): number {
  let total = 0;
  for (const id of [pid, ...childPids(pid)]) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${id}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      try {
        total += Number(readFileSync(`/proc/${id}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // a thread that ended between the listing and the read
      }
    }
  }
  return total;
}

function childPids(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return text === "" ? [] : text.split(" ").map(Number);
  } catch {
    return [];
  }
}

const median = (values: number[]) => values.toSorted((x, y) => x - y)[Math.floor(values.length / 2)]!;

interface Load {
  tls: boolean;
  /** Shortest response body accepted, in bytes (a shorter one means the server answered something else). */
  minBodyBytes: number;
  /** The client's argv for `requests` requests to the port. */
  argv(port: number, requests: number): string[];
}

const h2loadLoad = (
  tls: boolean,
  extra: string[],
  connections: number,
  path = "/1k.bin",
  minBodyBytes = KiB,
): Load => ({
  tls,
  minBodyBytes,
  argv: (port, requests) => [
    "h2load",
    "-t1",
    `-c${connections}`,
    ...extra,
    `-n${requests}`,
    `${tls ? "https" : "http"}://127.0.0.1:${port}${path}`,
  ],
});

const LOADS: Record<string, Load> = {
  h2: h2loadLoad(true, ["-m10"], 10),
  https: h2loadLoad(true, ["--h1"], 64),
  http: h2loadLoad(false, ["--h1"], 64),
  // The backend's /hello answers "hello" (5 bytes): what the proxy costs, not the bytes it moves.
  proxy: h2loadLoad(false, ["--h1"], 64, "/hello", 5),
};

/** One h2load run; the requests that succeeded. */
async function runH2load(argv: string[], core: number, expected: number, minBodyBytes: number): Promise<number> {
  const run = await runTool(argv, core, 600_000);
  const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(run.stdout);
  const traffic = /traffic: [^(]*\((\d+)\) total, [^(]*\((\d+)\) headers .*?, [^(]*\((\d+)\) data/.exec(run.stdout);
  if (run.exitCode !== 0 || requests === null) throw new Error(`h2load failed: ${run.stderr || run.stdout}`);
  const succeeded = Number(requests[1]);
  if (succeeded < expected) throw new Error(`only ${succeeded} of ${expected} requests succeeded:\n${run.stdout}`);
  if (traffic !== null && Number(traffic[3]) / succeeded < minBodyBytes) {
    throw new Error(`short responses:\n${run.stdout}`);
  }
  return succeeded;
}

/** `processes` × openssl s_time -new for `seconds`; the handshakes completed. */
async function runHandshakes(port: number, processes: number, seconds: number, core: number): Promise<number> {
  const runs = await Promise.all(
    Array.from({ length: processes }, () => runTool(sTimeArgv(port, seconds), core, seconds * 1000 + 30_000)),
  );
  let count = 0;
  for (const run of runs) {
    const line = /(\d+) connections in ([\d.]+) real seconds/.exec(run.stdout);
    if (run.exitCode !== 0 || line === null) throw new Error(`s_time failed: ${run.stderr || run.stdout}`);
    count += Number(line[1]);
  }
  return count;
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("cpu-per-request", USAGE, {
    args: argv,
    options: {
      load: { type: "string", default: "h2" },
      servers: { type: "string", default: "hps-https,nginx-https" },
      requests: { type: "string", default: "100000" },
      warmup: { type: "string", default: "10000" },
      rounds: { type: "string", default: "5" },
      seconds: { type: "string", default: "4" },
      processes: { type: "string", default: "8" },
      b: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      "server-core": { type: "string", default: "0" },
      "client-core": { type: "string", default: "1" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const handshakes = args.load === "handshakes";
  const load = LOADS[args.load];
  if (!handshakes && load === undefined) {
    process.stderr.write(`cpu-per-request: unknown --load ${args.load}\n${USAGE}`);
    return 2;
  }
  const names = args.servers.split(",") as ServerName[];
  for (const name of names) {
    if (SERVERS[name] === undefined) {
      process.stderr.write(`cpu-per-request: unknown server ${name}\n`);
      return 2;
    }
  }
  const serverCore = Number(args["server-core"]);
  const clientCore = Number(args["client-core"]);
  const requests = Number(args.requests);
  const warmup = Number(args.warmup);
  stopChildrenOnSignals();
  const tempDir = mkdtempSync(join(tmpdir(), "hps-cpr-"));
  // One call, so no port is handed out twice: a port per server (and hps-b), admin ports, the proxy backends' two.
  const allPorts = freePorts((names.length + 1) * 2 + 2);
  const serverPorts = allPorts.slice(0, names.length + 1);
  const env: BenchEnv = {
    tempDir,
    wwwDir: join(tempDir, "www"),
    serverCore,
    adminPorts: allPorts.slice(names.length + 1, (names.length + 1) * 2),
    helperCore: clientCore,
    tls: null,
    backends: null,
  };
  const labels: string[] = [];
  const children: Child[] = [];
  const ports: number[] = [];
  try {
    await writeHttpFiles(env.wwwDir);
    if (names.some(isProxyServer)) {
      // On the load generator's core: the server's core runs the proxy alone.
      const backendPorts = [allPorts.at(-2)!, allPorts.at(-1)!] as const;
      env.backends = await startProxyBackends(tempDir, env.wwwDir, clientCore, backendPorts);
    }
    if (handshakes || load!.tls || names.some((name) => TLS_SERVERS.has(name))) {
      env.tls = await makeBenchCertificate(tempDir);
    }
    for (const [index, name] of names.entries()) {
      const port = serverPorts[index]!;
      const spec = SERVERS[name];
      if (spec.unavailable !== null) throw new Error(`${name}: ${spec.unavailable}`);
      children.push(await spec.start({ ...env, hpsSets: args.set }, port));
      ports.push(port);
      labels.push(name);
    }
    if (args.b !== undefined) {
      const first = names.find((name) => name.startsWith("hps-"));
      if (first === undefined) throw new Error("--b needs an hps server in --servers");
      const port = serverPorts[names.length]!;
      children.push(await SERVERS[first].start({ ...env, repo: resolve(args.b) }, port));
      ports.push(port);
      labels.push(`${first}@${args.b}`);
    }
    const costs: number[][] = labels.map(() => []);
    for (let round = 1; round <= Number(args.rounds); round++) {
      const line: string[] = [];
      for (let turn = 0; turn < labels.length; turn++) {
        const i = (turn + round - 1) % labels.length; // a different server first each round
        const port = ports[i]!;
        const pid = children[i]!.pid;
        let done = 0;
        let before = 0;
        try {
          if (handshakes) {
            await runHandshakes(port, Number(args.processes), 1, clientCore);
            before = cpuNanoseconds(pid);
            done = await runHandshakes(port, Number(args.processes), Number(args.seconds), clientCore);
          } else {
            if (warmup > 0) await runH2load(load!.argv(port, warmup), clientCore, warmup, load!.minBodyBytes);
            before = cpuNanoseconds(pid);
            done = await runH2load(load!.argv(port, requests), clientCore, requests, load!.minBodyBytes);
          }
        } catch (error) {
          // The logs go with the temporary directory: what the server (and the proxies' backends) said goes with the error.
          const logs = [children[i]!, ...(env.backends?.children ?? [])]
            .map((child) => `--- ${child.name} (${child.isRunning ? "running" : "exited"}):\n${child.logTail()}`)
            .join("\n");
          throw new Error(`round ${round}, ${labels[i]}: ${(error as Error).message}\n${logs}`);
        }
        const micros = (cpuNanoseconds(pid) - before) / 1000 / done;
        costs[i]!.push(micros);
        line.push(`${labels[i]} ${micros.toFixed(2)} µs`);
      }
      process.stdout.write(`round ${round}: ${line.join(", ")}\n`);
    }
    const unit = handshakes ? "µs per handshake" : "µs per request";
    process.stdout.write(`\n| server | ${unit} (median) | min–max | ${labels[0]} cheaper by (median of rounds) |\n`);
    process.stdout.write("| --- | ---: | ---: | ---: |\n");
    for (const [i, label] of labels.entries()) {
      const ratios = costs[i]!.map((cost, round) => cost / costs[0]![round]!);
      process.stdout.write(
        `| ${label} | ${median(costs[i]!).toFixed(2)} | ${Math.min(...costs[i]!).toFixed(2)}–${Math.max(...costs[i]!).toFixed(2)} | ${median(ratios).toFixed(2)}× |\n`,
      );
    }
    return 0;
  } finally {
    await stopAll();
    rmSync(tempDir, { recursive: true, force: true });
  }
}

process.exit(await main(process.argv.slice(2)));
