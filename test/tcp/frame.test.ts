// HPS/1 codec: header layout, encoder, and the streaming decoder under every way a stream can be cut.
import { describe, expect, test } from "bun:test";
import {
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameStatus,
  Opcode,
  encodeFrame,
  writeFrameHeader,
} from "../../src/tcp/frame.ts";

interface Decoded {
  opcode: number;
  status: number;
  requestId: number;
  payload: number[];
}

type Method = "push" | "pushRanges";

/** Decodes `chunks` with push (payload views) or pushRanges (payload ranges); both must give the same frames. */
function collectWith(
  method: Method,
  decoder: FrameDecoder,
  chunks: Uint8Array[],
): { frames: Decoded[]; status: number } {
  const frames: Decoded[] = [];
  let status: number = FrameStatus.OK;
  for (const chunk of chunks) {
    status =
      method === "push"
        ? decoder.push(chunk, (opcode, frameStatus, requestId, payload) => {
            frames.push({ opcode, status: frameStatus, requestId, payload: [...payload] });
          })
        : decoder.pushRanges(chunk, (opcode, frameStatus, requestId, bytes, payloadStart, payloadBytes) => {
            frames.push({
              opcode,
              status: frameStatus,
              requestId,
              payload: [...bytes.subarray(payloadStart, payloadStart + payloadBytes)],
            });
          });
    if (status !== FrameStatus.OK) break;
  }
  return { frames, status };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

describe("header", () => {
  test("writes the big-endian layout of docs/hps1-protocol.md", () => {
    const target = new Uint8Array(14).fill(0xee);
    writeFrameHeader(target, 2, 5, 0x02, 0x0304, 0xa1b2c3d4);
    expect([...target]).toEqual([0xee, 0xee, 0, 0, 0, 13, 1, 0x02, 0x03, 0x04, 0xa1, 0xb2, 0xc3, 0xd4]);
  });

  test("encodeFrame puts the payload after the header", () => {
    const frame = encodeFrame(Opcode.ECHO, 0, 7, new Uint8Array([9, 8, 7]));
    expect(frame.length).toBe(FRAME_HEADER_BYTES + 3);
    expect([...frame.subarray(0, 4)]).toEqual([0, 0, 0, 11]);
    expect([...frame.subarray(12)]).toEqual([9, 8, 7]);
    expect(encodeFrame(Opcode.PING, 0, 1).length).toBe(FRAME_HEADER_BYTES);
  });
});

describe.each(["push", "pushRanges"] as const)("FrameDecoder.%s", (method) => {
  const collect = (decoder: FrameDecoder, chunks: Uint8Array[]) => collectWith(method, decoder, chunks);
  const frames = [
    encodeFrame(Opcode.PING, 0, 1),
    encodeFrame(Opcode.ECHO, 0, 2, new Uint8Array([1, 2, 3, 4, 5])),
    encodeFrame(
      Opcode.HASH,
      6,
      0xffffffff,
      new Uint8Array(300).map((_, i) => i & 0xff),
    ),
    encodeFrame(0x80, 0, 4, new Uint8Array([42])),
  ];
  const stream = concat(frames);
  const expected: Decoded[] = [
    { opcode: Opcode.PING, status: 0, requestId: 1, payload: [] },
    { opcode: Opcode.ECHO, status: 0, requestId: 2, payload: [1, 2, 3, 4, 5] },
    {
      opcode: Opcode.HASH,
      status: 6,
      requestId: 0xffffffff,
      payload: [...new Uint8Array(300).map((_, i) => i & 0xff)],
    },
    { opcode: 0x80, status: 0, requestId: 4, payload: [42] },
  ];

  test("many frames in one chunk", () => {
    expect(collect(new FrameDecoder(1024), [stream])).toEqual({ frames: expected, status: FrameStatus.OK });
  });

  test("split in two at every offset", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const result = collect(new FrameDecoder(1024), [stream.slice(0, cut), stream.slice(cut)]);
      expect(result).toEqual({ frames: expected, status: FrameStatus.OK });
    }
  });

  test("split in three at every pair of offsets in the first frames (header split twice)", () => {
    const head = stream.subarray(0, 40);
    for (let a = 0; a <= head.length; a++) {
      for (let b = a; b <= head.length; b++) {
        const decoder = new FrameDecoder(1024);
        const result = collect(decoder, [stream.slice(0, a), stream.slice(a, b), stream.slice(b)]);
        expect(result.frames).toEqual(expected);
      }
    }
  });

  test("one byte at a time, reusing the decoder after reset", () => {
    const decoder = new FrameDecoder(1024);
    for (let round = 0; round < 2; round++) {
      const chunks = [...stream].map((byte) => new Uint8Array([byte]));
      expect(collect(decoder, chunks)).toEqual({ frames: expected, status: FrameStatus.OK });
      decoder.reset();
    }
  });

  test("payloadIsBuffered tells a chunk view from the decoder's own buffer", () => {
    const decoder = new FrameDecoder(1024);
    const flags: boolean[] = [];
    const chunks = [frames[1]!, frames[1]!.slice(0, 5), frames[1]!.slice(5)];
    const payloadIsChunkView: boolean[] = [];
    for (const chunk of chunks) {
      if (method === "push") {
        decoder.push(chunk, (_o, _s, _id, payload) => {
          flags.push(decoder.payloadIsBuffered);
          payloadIsChunkView.push(payload.buffer === chunk.buffer);
        });
      } else {
        decoder.pushRanges(chunk, (_o, _s, _id, bytes) => {
          flags.push(decoder.payloadIsBuffered);
          payloadIsChunkView.push(bytes === chunk);
        });
      }
    }
    expect(flags).toEqual([false, true]);
    expect(payloadIsChunkView).toEqual([true, false]);
  });

  test("a frame of exactly the limit passes; one byte more is TOO_LARGE before its payload arrives", () => {
    const limit = 8 + 100;
    expect(collect(new FrameDecoder(limit), [encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(100))]).frames.length).toBe(
      1,
    );
    const header = encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(101)).subarray(0, FRAME_HEADER_BYTES);
    expect(collect(new FrameDecoder(limit), [header]).status).toBe(FrameStatus.TOO_LARGE);
    // A 4 GiB length field is refused from the header alone (nothing that size is allocated).
    const huge = new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect(collect(new FrameDecoder(limit), [huge.subarray(0, 5), huge.subarray(5)]).status).toBe(
      FrameStatus.TOO_LARGE,
    );
  });

  test("bad version and a length below 8 are BAD_FRAME, and the failure is sticky until reset", () => {
    const badVersion = encodeFrame(Opcode.PING, 0, 1);
    badVersion[4] = 2;
    const decoder = new FrameDecoder(1024);
    expect(collect(decoder, [badVersion]).status).toBe(FrameStatus.BAD_FRAME);
    expect(collect(decoder, [encodeFrame(Opcode.PING, 0, 2)]).status).toBe(FrameStatus.BAD_FRAME);
    decoder.reset();
    expect(collect(decoder, [encodeFrame(Opcode.PING, 0, 3)]).frames.length).toBe(1);
    const shortLength = new Uint8Array([0, 0, 0, 7, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect(collect(new FrameDecoder(1024), [shortLength]).status).toBe(FrameStatus.BAD_FRAME);
  });

  test("frames good before a bad one are delivered", () => {
    const bad = encodeFrame(Opcode.PING, 0, 9);
    bad[4] = 0;
    const result = collect(new FrameDecoder(1024), [concat([frames[0]!, frames[1]!, bad])]);
    expect(result.frames).toEqual(expected.slice(0, 2));
    expect(result.status).toBe(FrameStatus.BAD_FRAME);
  });
});

describe("FrameDecoder.stop and resume (backpressure)", () => {
  const frames = [
    encodeFrame(Opcode.PING, 0, 1),
    encodeFrame(Opcode.ECHO, 0, 2, new Uint8Array([1, 2, 3, 4, 5])),
    encodeFrame(
      Opcode.HASH,
      6,
      3,
      new Uint8Array(300).map((_, i) => i & 0xff),
    ),
    encodeFrame(0x80, 0, 4, new Uint8Array([42])),
  ];
  const stream = concat(frames);
  const expectedIds = [1, 2, 3, 4];

  /** Decodes `chunks`, stopping after every frame and resuming until nothing is held before the next chunk. */
  function decodeStoppingEveryFrame(decoder: FrameDecoder, chunks: Uint8Array[]) {
    const ids: number[] = [];
    const buffered: boolean[] = [];
    let payloadsIntact = true;
    const onFrame = (
      _opcode: number,
      _status: number,
      requestId: number,
      bytes: Uint8Array,
      payloadStart: number,
      payloadBytes: number,
    ) => {
      ids.push(requestId);
      buffered.push(decoder.payloadIsBuffered);
      const original = frames[requestId - 1]!;
      payloadsIntact &&=
        Buffer.compare(
          bytes.subarray(payloadStart, payloadStart + payloadBytes),
          original.subarray(FRAME_HEADER_BYTES),
        ) === 0;
      decoder.stop();
    };
    for (const chunk of chunks) {
      expect(decoder.pushRanges(chunk, onFrame)).toBe(FrameStatus.OK);
      for (let round = 0; decoder.heldBytes() > 0 && round < 10; round++)
        expect(decoder.resume(onFrame)).toBe(FrameStatus.OK);
      expect(decoder.heldBytes()).toBe(0);
    }
    return { ids, buffered, payloadsIntact };
  }

  test("one frame per push or resume; the rest is kept and decoded in order", () => {
    const decoder = new FrameDecoder(1024);
    const ids: number[] = [];
    const onFrame = (_o: number, _s: number, requestId: number) => {
      ids.push(requestId);
      decoder.stop();
    };
    expect(decoder.pushRanges(stream, onFrame)).toBe(FrameStatus.OK);
    expect(ids).toEqual([1]);
    expect(decoder.heldBytes()).toBe(stream.length - frames[0]!.length);
    // A chunk that arrives while bytes are held is appended, not decoded ahead of them.
    expect(decoder.pushRanges(encodeFrame(Opcode.PING, 0, 5), onFrame)).toBe(FrameStatus.OK);
    expect(ids).toEqual([1]);
    for (let round = 0; round < 4; round++) expect(decoder.resume(onFrame)).toBe(FrameStatus.OK);
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    expect([decoder.heldBytes(), decoder.bufferedBytes()]).toEqual([0, 0]);
    expect(decoder.resume(onFrame)).toBe(FrameStatus.OK);
    expect(ids).toEqual([1, 2, 3, 4, 5]);
  });

  test("split in two at every offset, stopping after every frame: same frames, payloads intact", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const result = decodeStoppingEveryFrame(new FrameDecoder(1024), [stream.slice(0, cut), stream.slice(cut)]);
      expect([cut, result.ids, result.payloadsIntact]).toEqual([cut, expectedIds, true]);
    }
  });

  test("frames decoded by resume live in the decoder's buffer (payloadIsBuffered)", () => {
    const result = decodeStoppingEveryFrame(new FrameDecoder(1024), [stream]);
    expect(result.buffered).toEqual([false, true, true, true]);
  });

  test("a bad frame among the kept bytes is found by resume, and the failure is sticky", () => {
    const bad = encodeFrame(Opcode.PING, 0, 9);
    bad[4] = 7;
    const decoder = new FrameDecoder(1024);
    const ids: number[] = [];
    const onFrame = (_o: number, _s: number, requestId: number) => {
      ids.push(requestId);
      decoder.stop();
    };
    expect(decoder.pushRanges(concat([frames[0]!, frames[1]!, bad]), onFrame)).toBe(FrameStatus.OK);
    expect(decoder.resume(onFrame)).toBe(FrameStatus.OK);
    expect(decoder.resume(onFrame)).toBe(FrameStatus.BAD_FRAME);
    expect(ids).toEqual([1, 2]);
    expect(decoder.pushRanges(frames[0]!, onFrame)).toBe(FrameStatus.BAD_FRAME);
    expect(decoder.bufferedBytes()).toBe(0);
  });
});

describe("FrameDecoder memory", () => {
  const MIB = 1024 * 1024;

  test("a header claiming a large frame takes memory only as its payload arrives", () => {
    const decoder = new FrameDecoder(MIB);
    const payload = new Uint8Array(MIB - 8).map((_, i) => (i * 13) & 0xff);
    const frame = encodeFrame(Opcode.ECHO, 0, 1, payload);
    let received: Uint8Array | null = null;
    const onFrame = (_o: number, _s: number, _id: number, bytes: Uint8Array, start: number, length: number) => {
      received = bytes.slice(start, start + length);
    };
    // The header and one payload byte: the buffer stays small although the frame will be 1 MiB.
    expect(decoder.pushRanges(frame.subarray(0, FRAME_HEADER_BYTES + 1), onFrame)).toBe(FrameStatus.OK);
    expect(decoder.capacityBytes()).toBeLessThanOrEqual(256);
    expect(decoder.pushRanges(frame.subarray(FRAME_HEADER_BYTES + 1, 4096), onFrame)).toBe(FrameStatus.OK);
    expect(decoder.capacityBytes()).toBeLessThanOrEqual(2 * 4096);
    for (let offset = 4096; offset < frame.length; offset += 64 * 1024) {
      expect(decoder.pushRanges(frame.subarray(offset, Math.min(frame.length, offset + 64 * 1024)), onFrame)).toBe(
        FrameStatus.OK,
      );
      expect(decoder.capacityBytes()).toBeLessThanOrEqual(Math.min(frame.length, 2 * (offset + 64 * 1024)));
    }
    expect(Buffer.compare(received!, payload)).toBe(0);
    // Capped at the frame: never more than the frame itself.
    expect(decoder.capacityBytes()).toBeLessThanOrEqual(frame.length);
    decoder.reset();
    expect(decoder.capacityBytes()).toBe(0);
  });

  test("a header split in two takes no more than the initial buffer", () => {
    const decoder = new FrameDecoder(MIB);
    const header = encodeFrame(Opcode.ECHO, 0, 1, new Uint8Array(MIB - 8)).subarray(0, FRAME_HEADER_BYTES);
    const ignore = () => {};
    expect(decoder.pushRanges(header.subarray(0, 5), ignore)).toBe(FrameStatus.OK);
    expect(decoder.pushRanges(header.subarray(5), ignore)).toBe(FrameStatus.OK);
    expect(decoder.pushRanges(new Uint8Array(10), ignore)).toBe(FrameStatus.OK);
    expect(decoder.bufferedBytes()).toBe(FRAME_HEADER_BYTES + 10);
    expect(decoder.capacityBytes()).toBeLessThanOrEqual(256);
  });
});
