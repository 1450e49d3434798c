// `bun bench/e2e/paired.ts`: two servers measured at the same time, for machines too loaded for bench:e2e's rounds.
//
// Both servers run on the same core (--server-core), each driven by its own `bun run load` on the other core, for the
// same seconds: whatever else loads the machine loads both alike. Each round prints both rates and both servers' CPU
// seconds (utime + stime from /proc); the summary gives the medians of A/B and of A/B per server CPU-second. Run it with
// A = B first to see how far apart two identical servers land on this machine (the calibration).
//
//   bun bench/e2e/paired.ts --case stream --a . --b ../main-checkout [--b-baseline bun-echo] [--rounds 7 --seconds 4]
//   --case pingpong | stream | ping | hash    (the load of bench:e2e's echo-pingpong, echo-stream, custom-ping, custom-hash)
//   --a DIR, --b DIR                          hps checkouts to compare (src/main.ts in each); --b-baseline bun-echo
//                                             compares A with the raw Bun.listen echo instead of B
//   --set-a table.key=value                   extra settings for A (repeatable)
import { spawn, type Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseToolArgs } from "../cli.ts";
import { freePorts } from "./process.ts";

const USAGE =
  "Usage: bun bench/e2e/paired.ts --case pingpong|stream|ping|hash --a DIR --b DIR [options] (see the file)\n";
const REPO = new URL("../../", import.meta.url).pathname;
const LOADS: Record<string, { scheme: "echo" | "hps"; args: string[]; unit: string }> = {
  pingpong: { scheme: "echo", args: ["-c", "64", "-p", "1", "-s", "64"], unit: "round trips/s" },
  stream: { scheme: "echo", args: ["-c", "8", "-p", "8", "-s", "65536"], unit: "MB/s" },
  ping: { scheme: "hps", args: ["-c", "16", "-p", "64", "-s", "0", "--opcode", "ping"], unit: "frames/s" },
  hash: { scheme: "hps", args: ["-c", "64", "-p", "1", "-s", "64", "--opcode", "hash"], unit: "frames/s" },
};

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function untilListening(port: number, child: Subprocess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server on port ${port} exited (code ${child.exitCode})`);
    try {
      const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      socket.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`server on port ${port} did not start`);
}

const median = (values: number[]) => values.toSorted((x, y) => x - y)[Math.floor(values.length / 2)]!;

async function main(argv: string[]): Promise<number> {
  const parsed = parseToolArgs("paired", USAGE, {
    args: argv,
    options: {
      case: { type: "string", default: "stream" },
      a: { type: "string", default: REPO },
      b: { type: "string" },
      "b-baseline": { type: "string" },
      "set-a": { type: "string", multiple: true, default: [] },
      rounds: { type: "string", default: "7" },
      seconds: { type: "string", default: "4" },
      "server-core": { type: "string", default: "0" },
      "client-core": { type: "string", default: "1" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (typeof parsed === "number") return parsed;
  const args = parsed.values;
  const load = LOADS[args.case];
  if (load === undefined || (args.b === undefined && args["b-baseline"] !== "bun-echo")) {
    process.stderr.write(USAGE);
    return 2;
  }
  const tempDir = mkdtempSync(join(tmpdir(), "hps-paired-"));
  const emptyConfig = join(tempDir, "empty.toml");
  writeFileSync(emptyConfig, "# defaults: settings come from --set\n");
  const [portA, portB] = freePorts(2);
  const hpsArgv = (dir: string, port: number, sets: readonly string[]) => [
    "taskset",
    "-c",
    args["server-core"],
    "bun",
    join(resolve(dir), "src/main.ts"),
    "--config",
    emptyConfig,
    ...[
      `server.protocol=${load.scheme === "echo" ? "echo" : "custom"}`,
      "server.bind=127.0.0.1",
      `server.port=${port}`,
      "admin.enabled=false",
      "log.level=warn",
      "stats.interval_s=0",
      "pool.threads=1",
      ...sets,
    ].flatMap((s) => ["--set", s]),
  ];
  const argvB =
    args["b-baseline"] === "bun-echo"
      ? [
          "taskset",
          "-c",
          args["server-core"],
          "bun",
          join(REPO, "bench/baselines/bun-echo.ts"),
          "--port",
          String(portB),
        ]
      : hpsArgv(args.b!, portB!, []);
  const serverA = spawn(hpsArgv(args.a, portA!, args["set-a"]), { stdout: "ignore", stderr: "inherit" });
  const serverB = spawn(argvB, { stdout: "ignore", stderr: "inherit" });
  try {
    await untilListening(portA!, serverA);
    await untilListening(portB!, serverB);
    const drive = async (port: number): Promise<number> => {
      const client = spawn(
        [
          "taskset",
          "-c",
          args["client-core"],
          "bun",
          join(REPO, "src/client/load.ts"),
          `${load.scheme}://127.0.0.1:${port}`,
          ...load.args,
          "-d",
          `${args.seconds}s`,
          "-w",
          "1s",
          "--json",
        ],
        { stdout: "pipe", stderr: "ignore" },
      );
      const report = JSON.parse(await new Response(client.stdout).text());
      const seconds = report.durationSeconds as number;
      return args.case === "stream" ? report.bytes.read / seconds / 1e6 : report.requests.completed / seconds;
    };
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let round = 1; round <= Number(args.rounds); round++) {
      const before = [cpuSeconds(serverA.pid), cpuSeconds(serverB.pid)];
      const [rateA, rateB] = await Promise.all([drive(portA!), drive(portB!)]);
      const cpuA = cpuSeconds(serverA.pid) - before[0]!;
      const cpuB = cpuSeconds(serverB.pid) - before[1]!;
      ratios.push(rateA / rateB);
      cpuRatios.push(rateA / cpuA / (rateB / cpuB));
      process.stdout.write(
        `round ${round}: A ${rateA.toFixed(0)} ${load.unit} (${cpuA.toFixed(2)} CPU-s), B ${rateB.toFixed(0)} (${cpuB.toFixed(2)} CPU-s); A/B ${ratios.at(-1)!.toFixed(3)}, per CPU-s ${cpuRatios.at(-1)!.toFixed(3)}\n`,
      );
    }
    const range = (values: number[]) => `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;
    process.stdout.write(
      `${args.case}: A/B median ${median(ratios).toFixed(3)} (${range(ratios)}); per server CPU-second ${median(cpuRatios).toFixed(3)} (${range(cpuRatios)})\n`,
    );
    return 0;
  } finally {
    serverA.kill();
    serverB.kill();
    rmSync(tempDir, { recursive: true, force: true });
  }
}

process.exit(await main(process.argv.slice(2)));
