// Whole-server HTTP benchmark: hps against raw Bun baselines and nginx, wrk rounds alternating, markdown ratio table.
//
// Usage: bun bench/e2e/http.ts [--rounds 3] [--seconds 5] [--warmup 1] [--only 1k,64k,256m,pipe]
// Servers run pinned to core 0, wrk to core 1 (BENCHMARKS.md). Each round runs every server once per workload, in
// turn, so drift hits all of them alike; the table shows the median of the rounds, the min-max, the ratio against
// nginx (its best configuration for that workload) and requests per second of server CPU (robust on shared cores).
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensurePackages, freePorts, runTool, startChild, stopAll, stopChildrenOnSignals, type Child } from "./process.ts";

const SERVER_CORE = 0;
const CLIENT_CORE = 1;
const REPO = resolve(import.meta.dir, "../..");

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1]! : fallback;
}
const rounds = Number(option("rounds", "3"));
const seconds = Number(option("seconds", "5"));
const warmupSeconds = Number(option("warmup", "1"));
const only = new Set(option("only", "1k,64k,256m,pipe").split(","));

interface ServerSpec {
  readonly key: string;
  readonly label: string;
  start(port: number, root: string, work: string): Promise<Child>;
}

interface Workload {
  readonly key: string;
  readonly label: string;
  readonly path: string;
  readonly connections: number;
  /** wrk-pipeline.lua depth; 0 = plain wrk. */
  readonly pipeline: number;
  readonly unit: "req/s" | "GB/s";
  readonly servers: readonly string[];
}

const WORKLOADS: Workload[] = [
  { key: "1k", label: "1 KiB file", path: "/1k.bin", connections: 64, pipeline: 0, unit: "req/s", servers: ["hps", "bun-static", "bun-file", "nginx"] },
  { key: "64k", label: "64 KiB file", path: "/64k.bin", connections: 64, pipeline: 0, unit: "req/s", servers: ["hps", "bun-static", "bun-file", "nginx"] },
  { key: "256m", label: "256 MiB file (4 conns)", path: "/256m.bin", connections: 4, pipeline: 0, unit: "GB/s", servers: ["hps", "bun-static", "bun-file", "nginx"] },
  { key: "pipe", label: "1 KiB, pipelined x16", path: "/1k.bin", connections: 64, pipeline: 16, unit: "req/s", servers: ["hps", "bun-static", "nginx", "nginx-nopush-off", "nginx-sendfile-off"] },
];

function nginxConfig(work: string, name: string, port: number, root: string, sendfile: boolean, tcpNopush: boolean): string {
  const prefix = join(work, name);
  mkdirSync(prefix, { recursive: true });
  const conf = join(prefix, "nginx.conf");
  writeFileSync(conf, `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile ${sendfile ? "on" : "off"};
  tcp_nopush ${tcpNopush ? "on" : "off"};
  open_file_cache max=1000;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  types { application/octet-stream bin; }
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`);
  return conf;
}

const NGINX = "/usr/sbin/nginx";
const nginxServer = (key: string, label: string, sendfile: boolean, tcpNopush: boolean): ServerSpec => ({
  key,
  label,
  start: (port, root, work) =>
    startChild({
      name: key, argv: [Bun.which("nginx") ?? NGINX, "-c", nginxConfig(work, key, port, root, sendfile, tcpNopush), "-e", join(work, `${key}.stderr.log`)],
      core: SERVER_CORE, readyPort: port, readyTimeoutMs: 10_000, logPath: join(work, `${key}.log`),
    }),
});

const SERVERS: ServerSpec[] = [
  {
    key: "hps",
    label: "hps",
    start: (port, root, work) =>
      startChild({
        name: "hps",
        argv: ["bun", join(REPO, "src/main.ts"), "--port", String(port), "--protocol", "http",
          "--set", `http.root=${root}`, "--set", "admin.enabled=false", "--set", "log.access_log=false", "--set", "stats.interval_s=0"],
        core: SERVER_CORE, readyPort: port, readyTimeoutMs: 15_000, logPath: join(work, "hps.log"), cwd: REPO,
      }),
  },
  {
    key: "bun-static",
    label: "raw Bun, static route",
    start: (port, root, work) =>
      startChild({ name: "bun-static", argv: ["bun", join(REPO, "bench/baselines/bun-http-static.ts"), "--port", String(port), "--root", root],
        core: SERVER_CORE, readyPort: port, readyTimeoutMs: 30_000, logPath: join(work, "bun-static.log") }),
  },
  {
    key: "bun-file",
    label: "raw Bun, Response(Bun.file)",
    start: (port, root, work) =>
      startChild({ name: "bun-file", argv: ["bun", join(REPO, "bench/baselines/bun-http-file.ts"), "--port", String(port), "--root", root],
        core: SERVER_CORE, readyPort: port, readyTimeoutMs: 15_000, logPath: join(work, "bun-file.log") }),
  },
  nginxServer("nginx", "nginx (sendfile on, tcp_nopush on)", true, true),
  nginxServer("nginx-nopush-off", "nginx (tcp_nopush off)", true, false),
  nginxServer("nginx-sendfile-off", "nginx (sendfile off)", false, false),
];

/** The files every server serves: 1 KiB, 64 KiB and 256 MiB of pseudo-random bytes. */
function makeRoot(work: string): string {
  const root = join(work, "root");
  mkdirSync(root, { recursive: true });
  const block = new Uint8Array(1024 * 1024);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let i = 65536; i < block.length; i++) block[i] = block[i % 65536]! ^ (i >>> 16);
  writeFileSync(join(root, "1k.bin"), block.subarray(0, 1024));
  writeFileSync(join(root, "64k.bin"), block.subarray(0, 65536));
  const large = new Uint8Array(256 * 1024 * 1024);
  for (let at = 0; at < large.length; at += block.length) large.set(block, at);
  writeFileSync(join(root, "256m.bin"), large);
  // nginx workers may run as another user when started by root: everything must be world-readable.
  for (const path of [work, root, ...["1k.bin", "64k.bin", "256m.bin"].map((name) => join(root, name))]) chmodSync(path, 0o755);
  return root;
}

interface Sample {
  value: number;
  perCpuSecond: number;
  errors: number;
}

async function runWrk(server: Child, port: number, workload: Workload, durationSeconds: number): Promise<Sample> {
  const script = workload.pipeline > 0 ? join(REPO, "bench/e2e/wrk-pipeline.lua") : join(REPO, "bench/e2e/wrk-report.lua");
  const argv = ["wrk", "-t1", `-c${workload.connections}`, `-d${durationSeconds}s`, "-s", script, `http://127.0.0.1:${port}${workload.path}`];
  if (workload.pipeline > 0) argv.push("--", String(workload.pipeline));
  const cpuBefore = server.cpuSeconds();
  const run = await runTool(argv, CLIENT_CORE, (durationSeconds + 30) * 1000);
  const cpuUsed = server.cpuSeconds() - cpuBefore;
  const line = run.stdout.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (run.exitCode !== 0 || line === undefined) throw new Error(`wrk failed against ${server.name}: ${run.stderr || run.stdout}`);
  const summary = JSON.parse(line.slice("WRK_JSON ".length)) as { requests: number; bytes: number; durationMicros: number; connectErrors: number; readErrors: number; writeErrors: number; statusErrors: number; timeouts: number };
  const durationS = summary.durationMicros / 1e6;
  const value = workload.unit === "GB/s" ? summary.bytes / durationS / 1e9 : summary.requests / durationS;
  const errors = summary.connectErrors + summary.readErrors + summary.writeErrors + summary.statusErrors + summary.timeouts;
  return { value, perCpuSecond: cpuUsed > 0 ? summary.requests / cpuUsed : 0, errors };
}

const median = (values: number[]) => {
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function format(value: number, unit: Workload["unit"]): string {
  return unit === "GB/s" ? value.toFixed(2) : value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(0);
}

async function main(): Promise<void> {
  stopChildrenOnSignals();
  await ensurePackages([{ command: "wrk", pkg: "wrk" }, { command: "nginx", pkg: "nginx" }]);
  const work = join(tmpdir(), `hps-bench-http-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const root = makeRoot(work);
  const workloads = WORKLOADS.filter((w) => only.has(w.key));
  const neededKeys = new Set(workloads.flatMap((w) => w.servers));
  const servers = SERVERS.filter((s) => neededKeys.has(s.key));
  const ports = freePorts(servers.length);
  const running = new Map<string, { child: Child; port: number }>();
  try {
    for (const [index, spec] of servers.entries()) {
      const port = ports[index]!;
      running.set(spec.key, { child: await spec.start(port, root, work), port });
    }
    const results = new Map<string, Map<string, Sample[]>>();
    for (const workload of workloads) {
      const byServer = new Map<string, Sample[]>();
      results.set(workload.key, byServer);
      for (let round = 1; round <= rounds; round++) {
        for (const key of workload.servers) {
          const { child, port } = running.get(key)!;
          await runWrk(child, port, workload, warmupSeconds);
          const sample = await runWrk(child, port, workload, seconds);
          const list = byServer.get(key) ?? [];
          list.push(sample);
          byServer.set(key, list);
          process.stderr.write(`${workload.label} round ${round} ${key}: ${format(sample.value, workload.unit)} ${workload.unit}${sample.errors > 0 ? ` (${sample.errors} errors)` : ""}\n`);
        }
      }
    }
    printTable(workloads, results);
  } finally {
    await stopAll();
  }
}

function printTable(workloads: Workload[], results: Map<string, Map<string, Sample[]>>): void {
  const nginxKeys = ["nginx", "nginx-nopush-off", "nginx-sendfile-off"];
  console.log(`\nServer pinned to core ${SERVER_CORE}, wrk -t1 on core ${CLIENT_CORE}; ${rounds} alternating rounds of ${seconds} s (+${warmupSeconds} s warm-up); median (min-max).\n`);
  console.log("| work | server | result | min-max | req per server CPU-s | vs best nginx | CPU efficiency vs best nginx |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const workload of workloads) {
    const byServer = results.get(workload.key)!;
    const medians = new Map([...byServer].map(([key, samples]) => [key, median(samples.map((s) => s.value))]));
    const efficiency = new Map([...byServer].map(([key, samples]) => [key, median(samples.map((s) => s.perCpuSecond))]));
    const bestNginx = nginxKeys.filter((k) => medians.has(k)).sort((a, b) => medians.get(b)! - medians.get(a)!)[0]!;
    for (const key of workload.servers) {
      const samples = byServer.get(key)!;
      const values = samples.map((s) => s.value);
      const label = SERVERS.find((s) => s.key === key)!.label;
      const ratio = medians.get(key)! / medians.get(bestNginx)!;
      const cpuRatio = efficiency.get(key)! / efficiency.get(bestNginx)!;
      console.log(`| ${workload.label} | ${label} | ${format(medians.get(key)!, workload.unit)} ${workload.unit} | ${format(Math.min(...values), workload.unit)}-${format(Math.max(...values), workload.unit)} | ${format(efficiency.get(key)!, "req/s")} | ${ratio.toFixed(2)}x | ${cpuRatio.toFixed(2)}x |`);
    }
  }
}

await main();
