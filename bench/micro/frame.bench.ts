// HPS/1 decoder throughput (16 B and 4 KiB payloads, whole and split chunks): pushRanges (what the server uses) and
// push (a view per payload) against a naive DataView + concat decoder.
import { bench, group, run, summary } from "mitata";
import { FrameDecoder, Opcode, encodeFrame } from "../../src/tcp/frame.ts";

const FRAMES_PER_CHUNK = 64;

function stream(payloadBytes: number): Uint8Array {
  return Buffer.concat(
    Array.from({ length: FRAMES_PER_CHUNK }, (_, i) => encodeFrame(Opcode.ECHO, 0, i, new Uint8Array(payloadBytes))),
  );
}

/** The obvious alternative: concatenate every chunk to a leftover, parse with a DataView, slice payloads. */
class NaiveDecoder {
  private leftover = new Uint8Array(0);
  push(chunk: Uint8Array, onFrame: (opcode: number, requestId: number, payload: Uint8Array) => void): void {
    const data = new Uint8Array(this.leftover.length + chunk.length);
    data.set(this.leftover, 0);
    data.set(chunk, this.leftover.length);
    const view = new DataView(data.buffer);
    let offset = 0;
    while (data.length - offset >= 12) {
      const length = view.getUint32(offset);
      if (data.length - offset < 4 + length) break;
      onFrame(view.getUint8(offset + 5), view.getUint32(offset + 8), data.slice(offset + 12, offset + 4 + length));
      offset += 4 + length;
    }
    this.leftover = data.slice(offset);
  }
}

let sink = 0;
const onFrame = (_opcode: number, _status: number, requestId: number, payload: Uint8Array) => {
  sink += requestId + payload.length;
};
const onRange = (
  _opcode: number,
  _status: number,
  requestId: number,
  _bytes: Uint8Array,
  _payloadStart: number,
  payloadBytes: number,
) => {
  sink += requestId + payloadBytes;
};
const onNaive = (_opcode: number, requestId: number, payload: Uint8Array) => {
  sink += requestId + payload.length;
};

for (const payloadBytes of [16, 4096]) {
  const whole = stream(payloadBytes);
  // Cut at an odd size so most frames and many headers straddle chunks.
  const pieces: Uint8Array[] = [];
  for (let offset = 0; offset < whole.length; offset += 1021) pieces.push(whole.subarray(offset, offset + 1021));
  summary(() => {
    group(`${FRAMES_PER_CHUNK} frames of ${payloadBytes} B, one chunk`, () => {
      const decoder = new FrameDecoder(1 << 20);
      const viewDecoder = new FrameDecoder(1 << 20);
      const naive = new NaiveDecoder();
      bench("FrameDecoder.pushRanges", () => decoder.pushRanges(whole, onRange));
      bench("FrameDecoder.push (views)", () => viewDecoder.push(whole, onFrame));
      bench("DataView + concat", () => naive.push(whole, onNaive));
    });
    group(`${FRAMES_PER_CHUNK} frames of ${payloadBytes} B, 1021-byte chunks`, () => {
      const decoder = new FrameDecoder(1 << 20);
      const viewDecoder = new FrameDecoder(1 << 20);
      const naive = new NaiveDecoder();
      bench("FrameDecoder.pushRanges", () => {
        for (const piece of pieces) decoder.pushRanges(piece, onRange);
      });
      bench("FrameDecoder.push (views)", () => {
        for (const piece of pieces) viewDecoder.push(piece, onFrame);
      });
      bench("DataView + concat", () => {
        for (const piece of pieces) naive.push(piece, onNaive);
      });
    });
  });
}

await run();
if (sink === -1) console.log(sink);
