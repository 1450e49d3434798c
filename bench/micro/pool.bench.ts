// Pool dispatch of a trivial task at 1, 64 and 1024 in flight against raw postMessage to one Worker; HASH of 64 B via the pool against inline.
// Each iteration submits a batch of `inFlight` tasks at once and waits for all of them: time per iteration / inFlight = time per task.
import { bench, group, run, summary } from "mitata";
import { configSchema } from "../../src/config/schema.ts";
import { Logger } from "../../src/log.ts";
import { startWorkerPool } from "../../src/pool/worker-pool.ts";
import { Stats } from "../../src/stats/stats.ts";

const IDENTITY = 0x8a; // test/fixtures/pool-handlers.ts: returns its payload
const HASH = 0x02;
const IN_FLIGHT = [1, 64, 1024];
const THREADS = Number(process.env.POOL_BENCH_THREADS ?? 1);
/** pool.spin_us; unset = the setting's default. */
const SPIN_US = process.env.POOL_BENCH_SPIN_US === undefined ? undefined : Number(process.env.POOL_BENCH_SPIN_US);

const config = configSchema.parse({
  pool: { threads: THREADS, max_queue: 65_536, task_timeout_ms: 0, spin_us: SPIN_US },
  custom: { handlers: new URL("../../test/fixtures/pool-handlers.ts", import.meta.url).pathname },
  log: { level: "error" },
});
const pool = await startWorkerPool({ config, stats: Stats.create(), logger: Logger.silent(), gauges: new Map() });

// One batch at a time: a counter and a resolver, no closure per task.
let remaining = 0;
let failures = 0;
let batchDone: () => void = () => {};
function onDone(_token: number, status: number, _result: Uint8Array): void {
  if (status !== 0) failures++;
  if (--remaining === 0) batchDone();
}
function poolBatch(opcode: number, payload: Uint8Array, count: number): Promise<void> {
  remaining = count;
  const finished = new Promise<void>((resolve) => {
    batchDone = resolve;
  });
  for (let i = 0; i < count; i++) pool.run(opcode, payload, i, onDone);
  return finished;
}

const echo = new Worker(new URL("../../test/fixtures/echo-worker.ts", import.meta.url).href);
let echoRemaining = 0;
let echoDone: () => void = () => {};
echo.onmessage = () => {
  if (--echoRemaining === 0) echoDone();
};
function postMessageBatch(payload: Uint8Array, count: number): Promise<void> {
  echoRemaining = count;
  const finished = new Promise<void>((resolve) => {
    echoDone = resolve;
  });
  for (let i = 0; i < count; i++) echo.postMessage(payload);
  return finished;
}
await postMessageBatch(new Uint8Array(8), 10); // warm

const tiny = new Uint8Array(8);
for (const inFlight of IN_FLIGHT) {
  group(`trivial task, ${inFlight} in flight (${THREADS} pool worker${THREADS === 1 ? "" : "s"})`, () => {
    summary(() => {
      bench(`pool.run x${inFlight}`, () => poolBatch(IDENTITY, tiny, inFlight));
      bench(`raw postMessage x${inFlight}`, () => postMessageBatch(tiny, inFlight));
    });
  });
}

const payload64 = new Uint8Array(64).fill(1);
const digest = new Uint8Array(32);
group("HASH of 64 B, 64 at a time", () => {
  summary(() => {
    bench("pool (worker thread)", () => poolBatch(HASH, payload64, 64));
    bench("inline on this thread", () => {
      for (let i = 0; i < 64; i++) Bun.SHA256.hash(payload64, digest);
    });
  });
});

await run();
if (failures > 0) throw new Error(`${failures} pool tasks failed`);
echo.terminate();
await pool.stop({ graceful: false, timeoutMs: 0 });
