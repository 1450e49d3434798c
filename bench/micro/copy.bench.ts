// Copying a byte range into a larger buffer: a byte loop against TypedArray.set over a subarray view, by length.
// Sets BYTEWISE_COPY_MAX_BYTES in src/memory/copy.ts (used by the HPS/1 response batch and the pool's payload copy).
import { bench, group, run, summary } from "mitata";
import { copyRange } from "../../src/memory/copy.ts";

// A socket chunk holding many frames, copied from at varying offsets (as the server does), into a large target.
const source = new Uint8Array(64 * 1024).map((_, i) => i & 0xff);
const target = new Uint8Array(256 * 1024);
const COPIES = 64;

for (const length of [8, 16, 32, 48, 64, 96, 128, 256, 512]) {
  group(`${COPIES} copies of ${length} B`, () => {
    summary(() => {
      bench("byte loop", () => {
        for (let c = 0; c < COPIES; c++) {
          const from = (c * 997) & 0x7fff;
          const to = c * 1024;
          for (let i = 0; i < length; i++) target[to + i] = source[from + i]!;
        }
      });
      bench("set(subarray)", () => {
        for (let c = 0; c < COPIES; c++) {
          const from = (c * 997) & 0x7fff;
          target.set(source.subarray(from, from + length), c * 1024);
        }
      });
      bench("copyRange", () => {
        for (let c = 0; c < COPIES; c++) copyRange(source, (c * 997) & 0x7fff, length, target, c * 1024);
      });
    });
  });
}

await run();
