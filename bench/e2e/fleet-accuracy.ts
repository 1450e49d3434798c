// `bun run bench:fleet`: how closely N hps instances sharing one Redis hold a per-address rate limit under overload,
// and what it costs (Redis calls, Redis CPU, server CPU), against the same instances each limiting alone.
//
// Each round starts N instances (protocol http, one 1 KiB file, rate_limit.requests R per second, burst R) and one
// `bun run load` per instance in the open model, together X times R; every client is 127.0.0.1, so one address.
// The instances' /metrics are sampled every SAMPLE_MS: the answers admitted (2xx) over time give the over-admission
// in the steady state (after the first STEADY_AFTER_S seconds, the last sample aside, in the intervals where the
// servers saw at least twice the rate) and in the first second (the burst, plus the rate). Rounds alternate fleet
// (fleet.redis_url set) and alone (no fleet).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseToolArgs } from "../cli.ts";
import { median } from "./drivers.ts";
import { freePorts, portAccepts, runTool, startChild, stopAll, stopChildrenOnSignals, type Child } from "./process.ts";
import { startBenchRedis, type BenchEnv } from "./servers.ts";

const USAGE = `Usage: bun run bench:fleet [options]

Starts N hps instances sharing a rate limit through one redis-server, drives them together at X times the limit
from one client address, and prints how many requests were admitted against what the limit allows (steady state
and first second) and what the fleet costs, beside the same instances limiting alone.

Options:
  --instances N      hps instances (default 4)
  --rate R           rate_limit.requests per second (burst the same) (default 500)
  --overload X       offered load as a multiple of the rate (default 10)
  --seconds S        seconds of load per round (default 10)
  --rounds N         rounds of each mode, alternating fleet and alone (default 3)
  --sync-ms M        fleet.sync_interval_ms (default: the setting's default)
  --server-core N    core for the hps instances (default 0)
  --client-core N    core for the load generators and redis-server (default 1)
  --no-pin           do not pin
  --json PATH        where to write the results (default bench/e2e/fleet-results.json)
  -h, --help         this text
`;

const REPO = new URL("../../", import.meta.url).pathname;
const SAMPLE_MS = 250;
const STEADY_AFTER_S = 2;
const READY_TIMEOUT_MS = 15_000;

interface Sample {
  /** Seconds since the load started. */
  atSeconds: number;
  /** Answers 2xx, summed over the instances. */
  admitted: number;
  limited: number;
  redisCalls: number;
  creditAdmitted: number;
}

interface RoundResult {
  mode: "fleet" | "alone";
  /** Admitted in the steady state, per second, over the rate: 1.00 = exactly the limit. */
  steadyRatio: number;
  /** Seconds of the steady state measured (intervals with at least twice the rate offered). */
  steadySeconds: number;
  /** Admitted in the first second over (burst + rate). */
  firstSecondRatio: number;
  /** Admitted over the whole run over (burst + rate × the seconds the load ran). */
  totalRatio: number;
  admitted: number;
  limited: number;
  /** Requests the load generators sent per second (all instances). */
  offeredPerSecond: number;
  redisCallsPerSecond: number;
  /** Share of admitted requests admitted on credit (before the fleet granted them). */
  creditShare: number;
  /** CPU of all instances together, and of redis-server, as percent of one core. */
  serversCpuPercent: number;
  redisCpuPercent: number;
  /** Every sample, for a closer look (atSeconds from when the load was started). */
  samples: Sample[];
}

async function metricsOf(adminPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const space = line.lastIndexOf(" ");
    values[line.slice(0, space)] = Number(line.slice(space + 1));
  }
  return values;
}

async function sample(adminPorts: readonly number[], startedMs: number): Promise<Sample> {
  const all = await Promise.all(adminPorts.map(metricsOf));
  const sum = (name: string) => all.reduce((total, values) => total + (values[name] ?? 0), 0);
  return {
    atSeconds: (performance.now() - startedMs) / 1000,
    admitted: sum('hps_requests_total{protocol="http",code="2xx"}'),
    limited: sum("hps_rate_limited_total"),
    redisCalls: sum("hps_fleet_redis_calls_total"),
    creditAdmitted: sum("hps_fleet_credit_admitted_total"),
  };
}

/** The admitted count at `atSeconds`, interpolated between samples. */
function admittedAt(samples: readonly Sample[], atSeconds: number): number {
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1]!, samples[i]!];
    if (b.atSeconds >= atSeconds) {
      const share = (atSeconds - a.atSeconds) / Math.max(1e-9, b.atSeconds - a.atSeconds);
      return a.admitted + (b.admitted - a.admitted) * Math.min(1, Math.max(0, share));
    }
  }
  return samples.at(-1)!.admitted;
}

interface RoundOptions {
  env: BenchEnv;
  instances: number;
  rate: number;
  overload: number;
  seconds: number;
  syncMs: number | null;
  clientCore: number | null;
  redisUrl: string | null;
  redis: Child | null;
}

async function runRound(options: RoundOptions, round: number): Promise<RoundResult> {
  const { env, instances, rate } = options;
  const mode = options.redisUrl === null ? "alone" : "fleet";
  const ports = freePorts(instances * 2);
  const children: Child[] = [];
  const keyPrefix = `bench${round}${mode}:`;
  for (let i = 0; i < instances; i++) {
    const sets = [
      "server.bind=127.0.0.1",
      `server.port=${ports[i]}`,
      `admin.port=${ports[instances + i]}`,
      "log.level=warn",
      "log.access_log=false",
      "stats.interval_s=0",
      `http.root=${env.wwwDir}`,
      "rate_limit.enabled=true",
      `rate_limit.requests=${rate}`,
      "rate_limit.window_s=1",
      ...(options.redisUrl === null
        ? []
        : [`fleet.redis_url=${options.redisUrl}`, `fleet.key_prefix=${keyPrefix}`, `fleet.instance_id=i${i}`]),
      ...(options.syncMs === null || options.redisUrl === null ? [] : [`fleet.sync_interval_ms=${options.syncMs}`]),
    ];
    children.push(
      await startChild({
        name: `hps-${mode}-${i}`,
        argv: ["bun", join(REPO, "src/main.ts"), ...sets.flatMap((set) => ["--set", set])],
        core: env.serverCore,
        readyPort: ports[i]!,
        readyTimeoutMs: READY_TIMEOUT_MS,
        cwd: REPO,
        logPath: join(env.tempDir, `hps-${mode}-${i}.log`),
      }),
    );
  }
  const adminPorts = ports.slice(instances);
  try {
    // Ready means the public port; the admin listener comes up a moment later.
    const adminDeadline = Date.now() + READY_TIMEOUT_MS;
    for (const port of adminPorts) {
      while (!(await portAccepts(port))) {
        if (Date.now() > adminDeadline) throw new Error(`admin port ${port} did not open`);
        await Bun.sleep(25);
      }
    }
    if (mode === "fleet") {
      // Every instance must know the others before the load starts (the fair share of a burst depends on it).
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while ((await Promise.all(adminPorts.map(metricsOf))).some((values) => values.hps_fleet_holders !== instances)) {
        if (Date.now() > deadline) throw new Error("the instances did not all join the fleet");
        await Bun.sleep(100);
      }
    }
    const cpuBefore = children.map((child) => child.cpuSeconds());
    const redisCpuBefore = options.redis?.cpuSeconds() ?? 0;
    const perInstance = Math.round((rate * options.overload) / instances);
    const startedMs = performance.now();
    const samples: Sample[] = [await sample(adminPorts, startedMs)];
    const loads = ports
      .slice(0, instances)
      .map((port) =>
        runTool(
          [
            "bun",
            join(REPO, "src/client/load.ts"),
            "-c",
            "4",
            "-R",
            String(perInstance),
            "-d",
            `${options.seconds}s`,
            "--json",
            `http://127.0.0.1:${port}/1k.bin`,
          ],
          options.clientCore,
          options.seconds * 1000 + 15_000,
          REPO,
        ),
      );
    let running = true;
    const finished = Promise.all(loads).finally(() => {
      running = false;
    });
    while (running) {
      await Bun.sleep(SAMPLE_MS);
      samples.push(await sample(adminPorts, startedMs));
    }
    const runs = await finished;
    const last = await sample(adminPorts, startedMs);
    samples.push(last);
    const wallSeconds = last.atSeconds;
    const offered = runs.reduce((total, run) => {
      try {
        const report = JSON.parse(run.stdout) as { requests: { sent: number } };
        return total + report.requests.sent;
      } catch {
        return total;
      }
    }, 0);
    const first = samples[0]!;
    // The load processes start a moment apart (more so on a busy machine): the load runs from the sample before the
    // first answer to the last sample that saw answers.
    const answered = (entry: Sample) => entry.admitted + entry.limited;
    const firstActive = samples.findIndex((entry) => answered(entry) > answered(first));
    const startSeconds = samples[Math.max(0, firstActive - 1)]!.atSeconds;
    let lastActive = samples.length - 1;
    while (lastActive > 0 && answered(samples[lastActive]!) === answered(samples[lastActive - 1]!)) lastActive--;
    const loadEndSeconds = samples[lastActive]!.atSeconds;
    // The steady state: sample intervals after the first seconds in which the servers saw at least twice the rate
    // (on a shared machine the load generators stall now and then; an interval below the limit says nothing).
    const steadyFrom = startSeconds + STEADY_AFTER_S;
    const steadyTo = loadEndSeconds - SAMPLE_MS / 1000;
    let steadyAdmitted = 0;
    let steadySeconds = 0;
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1]!, samples[i]!];
      if (a.atSeconds < steadyFrom || b.atSeconds > steadyTo) continue;
      const seconds = b.atSeconds - a.atSeconds;
      if (answered(b) - answered(a) < 2 * rate * seconds) continue;
      steadyAdmitted += b.admitted - a.admitted;
      steadySeconds += seconds;
    }
    const firstSecond = admittedAt(samples, startSeconds + 1) - first.admitted;
    const admitted = last.admitted - first.admitted;
    const loadSeconds = loadEndSeconds - startSeconds;
    const cpuSeconds = children.reduce((total, child, i) => total + child.cpuSeconds() - cpuBefore[i]!, 0);
    return {
      mode,
      steadyRatio: steadySeconds > 0 ? steadyAdmitted / (rate * steadySeconds) : Number.NaN,
      steadySeconds,
      firstSecondRatio: firstSecond / (rate + rate),
      totalRatio: admitted / (rate + rate * loadSeconds),
      admitted,
      limited: last.limited - first.limited,
      offeredPerSecond: offered / loadSeconds,
      redisCallsPerSecond: (last.redisCalls - first.redisCalls) / wallSeconds,
      creditShare: admitted > 0 ? (last.creditAdmitted - first.creditAdmitted) / admitted : 0,
      serversCpuPercent: (100 * cpuSeconds) / wallSeconds,
      redisCpuPercent: options.redis === null ? 0 : (100 * (options.redis.cpuSeconds() - redisCpuBefore)) / wallSeconds,
      samples,
    };
  } finally {
    await Promise.all(children.map((child) => child.stop("SIGTERM", 5000)));
  }
}

function row(label: string, values: readonly number[], format: (value: number) => string): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `| ${label} | ${format(median(values))} | ${format(sorted[0]!)}–${format(sorted.at(-1)!)} |`;
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("bench:fleet", USAGE, {
    args: argv,
    options: {
      instances: { type: "string", default: "4" },
      rate: { type: "string", default: "500" },
      overload: { type: "string", default: "10" },
      seconds: { type: "string", default: "10" },
      rounds: { type: "string", default: "3" },
      "sync-ms": { type: "string" },
      "server-core": { type: "string", default: "0" },
      "client-core": { type: "string", default: "1" },
      "no-pin": { type: "boolean", default: false },
      json: { type: "string", default: "bench/e2e/fleet-results.json" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const [instances, rate, overload, seconds, rounds] = [
    args.instances,
    args.rate,
    args.overload,
    args.seconds,
    args.rounds,
  ].map(Number) as [number, number, number, number, number];
  const syncMs = args["sync-ms"] === undefined ? null : Number(args["sync-ms"]);
  if (
    ![instances, rate, rounds].every((value) => Number.isInteger(value) && value >= 1) ||
    !(overload > 0) ||
    !(seconds >= STEADY_AFTER_S + 2)
  ) {
    process.stderr.write(
      `bench:fleet: --instances, --rate and --rounds must be integers ≥ 1, --overload > 0, --seconds ≥ ${STEADY_AFTER_S + 2}\n`,
    );
    return 2;
  }
  if (Bun.which("redis-server") === null) {
    process.stderr.write("bench:fleet: redis-server not found (apt-get install -y redis-server)\n");
    return 1;
  }
  const pin = !args["no-pin"];
  const serverCore = pin ? Number(args["server-core"]) : null;
  const clientCore = pin ? Number(args["client-core"]) : null;
  const tempDir = mkdtempSync(join(tmpdir(), "hps-bench-fleet-"));
  stopChildrenOnSignals();
  try {
    const env: BenchEnv = {
      tempDir,
      wwwDir: join(tempDir, "www"),
      serverCore,
      adminPorts: [],
      helperCore: clientCore,
      tls: null,
      backends: null,
    };
    await Bun.write(join(env.wwwDir, "1k.bin"), new Uint8Array(1024).fill(97));
    const redis = await startBenchRedis(env, "redis-server");
    process.stderr.write(
      `bench:fleet: ${instances} instances, limit ${rate}/s (burst ${rate}), offered ${overload}× = ${rate * overload}/s from one address, ` +
        `${seconds} s × ${rounds} rounds per mode\n`,
    );
    const results: RoundResult[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const mode of round % 2 === 0 ? (["fleet", "alone"] as const) : (["alone", "fleet"] as const)) {
        const result = await runRound(
          {
            env,
            instances,
            rate,
            overload,
            seconds,
            syncMs,
            clientCore,
            redisUrl: mode === "fleet" ? redis.url : null,
            redis: mode === "fleet" ? redis.child : null,
          },
          round,
        );
        results.push(result);
        process.stderr.write(
          `  round ${round + 1}/${rounds} ${mode.padEnd(5)}: admitted ${result.admitted} (${result.limited} refused), ` +
            `steady ${result.steadyRatio.toFixed(3)}× the rate (over ${result.steadySeconds.toFixed(1)} s), first second ${result.firstSecondRatio.toFixed(3)}× burst+rate, ` +
            `whole run ${result.totalRatio.toFixed(3)}×; ${result.redisCallsPerSecond.toFixed(0)} Redis calls/s, ` +
            `servers ${result.serversCpuPercent.toFixed(0)}% CPU, redis ${result.redisCpuPercent.toFixed(1)}%\n`,
        );
      }
    }
    const of = (mode: "fleet" | "alone") => results.filter((result) => result.mode === mode);
    const ratio = (value: number) => `${value.toFixed(3)}×`;
    const lines = [
      `Fleet accuracy: ${instances} instances, limit ${rate}/s per address (burst ${rate}), ${overload}× overload, ${seconds} s, ${rounds} rounds (median, min–max)`,
      "",
      "| measure | median | min–max |",
      "| --- | --- | --- |",
      row(
        "fleet: admitted / rate, steady state (intervals offered ≥ 2× the rate)",
        of("fleet").map((r) => r.steadyRatio),
        ratio,
      ),
      row(
        "fleet: admitted / (burst + rate), first second",
        of("fleet").map((r) => r.firstSecondRatio),
        ratio,
      ),
      row(
        "fleet: admitted / (burst + rate × seconds), whole run",
        of("fleet").map((r) => r.totalRatio),
        ratio,
      ),
      row(
        "alone: admitted / rate, steady state (intervals offered ≥ 2× the rate)",
        of("alone").map((r) => r.steadyRatio),
        ratio,
      ),
      row(
        "alone: admitted / (burst + rate × seconds), whole run",
        of("alone").map((r) => r.totalRatio),
        ratio,
      ),
      row(
        "offered load, req/s",
        of("fleet").map((r) => r.offeredPerSecond),
        (v) => v.toFixed(0),
      ),
      row(
        "fleet: Redis calls per second (all instances)",
        of("fleet").map((r) => r.redisCallsPerSecond),
        (v) => v.toFixed(0),
      ),
      row(
        "fleet: share admitted on credit",
        of("fleet").map((r) => r.creditShare),
        (v) => `${(v * 100).toFixed(1)} %`,
      ),
      row(
        "fleet: redis-server CPU, % of a core",
        of("fleet").map((r) => r.redisCpuPercent),
        (v) => v.toFixed(1),
      ),
      row(
        "fleet: hps CPU (all instances), % of a core",
        of("fleet").map((r) => r.serversCpuPercent),
        (v) => v.toFixed(0),
      ),
      row(
        "alone: hps CPU (all instances), % of a core",
        of("alone").map((r) => r.serversCpuPercent),
        (v) => v.toFixed(0),
      ),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    writeFileSync(
      args.json,
      `${JSON.stringify({ schema: "hps-bench-fleet/1", date: new Date().toISOString(), instances, rate, overload, seconds, rounds, syncMs, results }, null, 2)}\n`,
    );
    process.stderr.write(`bench:fleet: results written to ${args.json}\n`);
    return 0;
  } finally {
    await stopAll();
    rmSync(tempDir, { recursive: true, force: true });
  }
}

process.exitCode = await main(Bun.argv.slice(2));
