// `bun run bench:loadgen`: how fast our load tester drives a server, side by side with wrk against the same nginx.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drive, median, type DriverPlan, type Measurement, type RunLength } from "./drivers.ts";
import { ensurePackages, freePorts, stopAll, stopChildrenOnSignals } from "./process.ts";
import { SERVERS, writeHttpFiles, type BenchEnv } from "./servers.ts";
import { parseToolArgs } from "../cli.ts";

const USAGE = `Usage: bun run bench:loadgen [--rounds N] [--seconds S] [--warmup S] [--connections C]

nginx (1 worker) serves a 1 KiB file pinned to core 0; wrk -t1 and \`bun run load\` (one thread) take turns
driving it from core 1 with the same connection count. Prints each driver's median req/s and the ratio load/wrk.
`;

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("bench:loadgen", USAGE, {
    args: argv,
    options: {
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      connections: { type: "string", default: "64" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const rounds = Number(args.rounds);
  const connections = Number(args.connections);
  const length: RunLength = { seconds: Number(args.seconds), warmupSeconds: Number(args.warmup), clientCore: 1 };
  const plans: Array<{ name: string; plan: DriverPlan }> = [
    {
      name: "wrk -t1",
      plan: { kind: "wrk", path: "/1k.bin", connections, pipeline: 1, unit: "req/s", minBodyBytes: 1024 },
    },
    {
      name: "bun run load",
      plan: {
        kind: "load",
        scheme: "http",
        path: "/1k.bin",
        connections,
        pipeline: 1,
        sizeBytes: 0,
        opcode: null,
        unit: "req/s",
      },
    },
  ];

  await ensurePackages([
    { command: "wrk", pkg: "wrk" },
    { command: "nginx", pkg: "nginx" },
  ]);
  const tempDir = mkdtempSync(join(tmpdir(), "hps-bench-loadgen-"));
  chmodSync(tempDir, 0o755);
  stopChildrenOnSignals();
  try {
    const [port] = freePorts(1) as [number];
    const env: BenchEnv = {
      tempDir,
      wwwDir: join(tempDir, "www"),
      serverCore: 0,
      adminPorts: [],
      helperCore: 1,
      tls: null,
      backends: null,
    };
    await writeHttpFiles(env.wwwDir);
    const nginx = await SERVERS.nginx.start(env, port);
    const results = plans.map(() => [] as Measurement[]);
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < plans.length; k++) {
        const index = (k + round) % plans.length;
        const cpuBefore = nginx.cpuSeconds();
        const startedMs = performance.now();
        const measurement = await drive(plans[index]!.plan, port, length);
        measurement.serverCpuPercent =
          (100 * (nginx.cpuSeconds() - cpuBefore)) / ((performance.now() - startedMs) / 1000);
        results[index]!.push(measurement);
        process.stderr.write(
          `  round ${round + 1}/${rounds} ${plans[index]!.name.padEnd(14)} ${Math.round(measurement.value).toLocaleString("en-US").padStart(9)} req/s` +
            `  client ${measurement.clientCpuPercent.toFixed(0)}% CPU, nginx ${measurement.serverCpuPercent.toFixed(0)}%${measurement.note ? `  (${measurement.note})` : ""}\n`,
        );
      }
    }
    const medians = results.map((runs) => median(runs.map((m) => m.value)));
    const lines = [
      `| driver (${connections} connections, 1 KiB from nginx, ${rounds} rounds × ${length.seconds} s) | median req/s | min–max | client CPU | ratio vs wrk |`,
      "| --- | ---: | ---: | ---: | ---: |",
      ...plans.map((entry, i) => {
        const values = results[i]!.map((m) => m.value);
        const cpu = median(results[i]!.map((m) => m.clientCpuPercent));
        return `| ${entry.name} | ${Math.round(medians[i]!).toLocaleString("en-US")} | ${Math.round(Math.min(...values)).toLocaleString("en-US")}–${Math.round(Math.max(...values)).toLocaleString("en-US")} | ${cpu.toFixed(0)} % | ${(medians[i]! / medians[0]!).toFixed(2)}× |`;
      }),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return results.some((runs) => runs.some((m) => m.errors > 0)) ? 1 : 0;
  } finally {
    await stopAll();
    rmSync(tempDir, { recursive: true, force: true });
  }
}

process.exit(await main(Bun.argv.slice(2)));
