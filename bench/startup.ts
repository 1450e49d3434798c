// `bun bench/startup.ts [runs]`: size and start-up time of the compiled binary (flag sets of scripts/build.ts)
// against `bun src/main.ts`. Start-up = spawn until the server says READY=1 on $NOTIFY_SOCKET (its listeners are
// up), plus the CPU time the process used to get there; runs alternate between the variants; medians reported.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinary, type BuildOptions } from "../scripts/build.ts";

const REPO = join(import.meta.dir, "..");
const runs = Number(process.argv[2] ?? 15);
const dir = mkdtempSync(join(tmpdir(), "hps-startup-"));

interface Variant {
  readonly name: string;
  readonly command: string[];
  sizeBytes: number | null;
  readonly wallMs: number[];
  readonly cpuMs: number[];
  readonly versionMs: number[];
}

const FLAG_SETS: Array<[string, Omit<BuildOptions, "outfile" | "target">]> = [
  ["binary (no flags)", { minify: false, bytecode: false, sourcemap: false }],
  ["binary --minify", { minify: true, bytecode: false, sourcemap: false }],
  ["binary --bytecode", { minify: false, bytecode: true, sourcemap: false }],
  ["binary --minify --bytecode", { minify: true, bytecode: true, sourcemap: false }],
  ["binary --minify --bytecode --sourcemap", { minify: true, bytecode: true, sourcemap: true }],
];

const variants: Variant[] = [
  {
    name: "bun src/main.ts",
    command: [process.execPath, join(REPO, "src", "main.ts")],
    sizeBytes: null,
    wallMs: [],
    cpuMs: [],
    versionMs: [],
  },
];
for (const [index, [name, flags]] of FLAG_SETS.entries()) {
  const outfile = join(dir, `hps-${index}`);
  const built = await buildBinary({ outfile, target: null, ...flags });
  variants.push({ name, command: [outfile], sizeBytes: built.sizeBytes, wallMs: [], cpuMs: [], versionMs: [] });
}

/** A unix datagram socket to receive READY=1 (socat), so the clock stops when hps says its listeners are up. */
async function startOnce(variant: Variant, round: number): Promise<void> {
  const socketPath = join(dir, `notify-${round}.sock`);
  const receiver = Bun.spawn(["socat", "-u", `UNIX-RECV:${socketPath}`, "-"], { stdout: "pipe" });
  const reader = receiver.stdout.getReader();
  while (!existsSync(socketPath)) await Bun.sleep(1);
  const args = [
    "--set",
    "server.bind=127.0.0.1",
    "--port",
    "0",
    "--set",
    "admin.port=0",
    "--set",
    `http.root=${REPO}/public`,
  ];
  const startedMs = performance.now();
  const child = Bun.spawn([...variant.command, ...args], {
    cwd: dir,
    env: { ...process.env, NOTIFY_SOCKET: socketPath },
    stdout: "ignore",
    stderr: "ignore",
  });
  let text = "";
  while (!text.includes("READY=1")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${variant.name}: no READY=1`);
    text += new TextDecoder().decode(value);
  }
  variant.wallMs.push(performance.now() - startedMs);
  const stat = (await Bun.file(`/proc/${child.pid}/stat`).text()).split(") ")[1]!.split(" ");
  variant.cpuMs.push(((Number(stat[11]) + Number(stat[12])) / 100) * 1000); // utime + stime, clock ticks
  child.kill("SIGKILL");
  await child.exited;
  receiver.kill();
  rmSync(socketPath, { force: true });
  const versionStartedMs = performance.now();
  Bun.spawnSync([...variant.command, "--version"], { cwd: dir, stdout: "ignore" });
  variant.versionMs.push(performance.now() - versionStartedMs);
}

for (let round = 0; round < runs; round++) {
  for (const variant of variants) await startOnce(variant, round);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};
const base = variants[0]!;
console.log(`runs: ${runs} per variant, alternating; medians (ratio to bun src/main.ts)`);
console.log("variant | size | start to READY=1 | CPU to READY=1 | --version");
for (const variant of variants) {
  const size = variant.sizeBytes === null ? "(source)" : `${(variant.sizeBytes / 1024 / 1024).toFixed(1)} MiB`;
  const wall = median(variant.wallMs);
  const cpu = median(variant.cpuMs);
  const version = median(variant.versionMs);
  console.log(
    `${variant.name} | ${size} | ${wall.toFixed(1)} ms (${(wall / median(base.wallMs)).toFixed(2)}) | ` +
      `${cpu.toFixed(0)} ms (${(cpu / median(base.cpuMs)).toFixed(2)}) | ${version.toFixed(1)} ms (${(version / median(base.versionMs)).toFixed(2)})`,
  );
}
rmSync(dir, { recursive: true, force: true });
