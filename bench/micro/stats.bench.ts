// Shared-memory counters (src/stats/stats.ts): a plain Float64 store into the thread's own shard against the atomic
// alternatives, and what counting one HTTP request costs (status class, bytes, duration and histogram bucket).
import { bench, group, run, summary } from "mitata";
import { Counter, Stats } from "../../src/stats/stats.ts";

const SLOTS = 64;
const float64Shard = new Float64Array(new SharedArrayBuffer(SLOTS * 8));
const bigInt64 = new BigInt64Array(new SharedArrayBuffer(SLOTS * 8));
const int32 = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
const stats = Stats.create();
let slot = 0;

group("one counter increment", () => {
  summary(() => {
    bench("Float64Array shard, plain store (what Stats does)", () => {
      float64Shard[slot]! += 1;
      slot = (slot + 1) & (SLOTS - 1);
    });
    bench("Atomics.add on BigInt64Array", () => {
      Atomics.add(bigInt64, slot, 1n);
      slot = (slot + 1) & (SLOTS - 1);
    });
    bench("Atomics.add on Int32Array (overflows byte counters)", () => {
      Atomics.add(int32, slot, 1);
      slot = (slot + 1) & (SLOTS - 1);
    });
  });
});

let micros = 0;
group("counting one HTTP request", () => {
  bench("httpStatus + bytesWritten + bytesRead + requestDone", () => {
    stats.httpStatus(200);
    stats.add(Counter.bytesWritten, 1024);
    stats.add(Counter.bytesRead, 80);
    stats.requestDone((micros = (micros + 7) & 1023));
  });
});

await run();
