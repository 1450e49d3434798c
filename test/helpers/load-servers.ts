// Tiny loopback servers with known behaviour for the load tester's tests (HTTP, echo, HPS/1).
import type { Socket, TCPSocketListener } from "bun";
import { FrameDecoder, FrameStatus, encodeFrame } from "../../src/tcp/frame.ts";

export interface TestServer {
  port: number;
  /** Requests (or echo bytes) received so far. */
  received(): number;
  stop(): void;
  [Symbol.dispose](): void;
}

interface ConnectionState {
  buffered: string;
  chain: Promise<void>;
  received: number;
}

/** What the HTTP server answers to request `index` (0-based, counted over all connections). */
export interface HttpAnswer {
  bytes: string;
  /** Answer after this many ms (stalls the connection: answers stay in order). */
  delayMs?: number;
}

export const OK_RESPONSE = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/** A raw HTTP/1.1 server: counts requests by their blank line and answers each with `answer(index)`, in order. */
export function startHttpServer(answer: (index: number) => HttpAnswer = () => ({ bytes: OK_RESPONSE })): TestServer {
  let received = 0;
  const listener: TCPSocketListener<ConnectionState> = Bun.listen<ConnectionState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { buffered: "", chain: Promise.resolve(), received: 0 };
      },
      data(socket, chunk) {
        const state = socket.data;
        state.buffered += chunk.toString("latin1");
        let end = state.buffered.indexOf("\r\n\r\n");
        while (end >= 0) {
          state.buffered = state.buffered.slice(end + 4);
          const { bytes, delayMs } = answer(received++);
          state.chain = state.chain.then(async () => {
            if (delayMs) await Bun.sleep(delayMs);
            writeAll(socket, Buffer.from(bytes, "latin1"));
          });
          end = state.buffered.indexOf("\r\n\r\n");
        }
      },
    },
  });
  return handle(listener, () => received);
}

/** Writes everything, resending what the socket did not take (bounded retries; small test responses rarely need them). */
function writeAll(socket: Socket<unknown>, bytes: Uint8Array, attemptsLeft = 1000): void {
  const written = socket.write(bytes);
  if (written >= 0 && written < bytes.length && attemptsLeft > 0) {
    setTimeout(() => writeAll(socket, bytes.subarray(written), attemptsLeft - 1), 1);
  }
}

function handle(listener: TCPSocketListener<unknown>, received: () => number): TestServer {
  const stop = (): void => listener.stop(true);
  return { port: listener.port, received, stop, [Symbol.dispose]: stop };
}

interface EchoState {
  received: number;
  /** Bytes the socket did not take yet, resent in order on drain. */
  unsent: Buffer[];
}

function flushEcho(socket: Socket<EchoState>): void {
  const queue = socket.data.unsent;
  while (queue.length > 0) {
    const head = queue[0]!;
    const written = socket.write(head);
    if (written < head.length) {
      queue[0] = head.subarray(Math.max(0, written));
      return;
    }
    queue.shift();
  }
}

/** An echo server with backpressure; when `corruptAt` is set, the byte at that stream position of every connection is flipped. */
export function startEchoServer(corruptAt = -1): TestServer {
  let received = 0;
  const listener = Bun.listen<EchoState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { received: 0, unsent: [] };
      },
      data(socket, chunk) {
        const state = socket.data;
        const copy = Buffer.from(chunk);
        if (corruptAt >= state.received && corruptAt < state.received + copy.length)
          copy[corruptAt - state.received]! ^= 0xff;
        state.received += copy.length;
        received += copy.length;
        state.unsent.push(copy);
        if (state.unsent.length === 1) flushEcho(socket);
      },
      drain(socket) {
        flushEcho(socket);
      },
    },
  });
  return handle(listener, () => received);
}

export interface HpsRequest {
  /** Order of arrival over all connections, from 0. */
  index: number;
  opcode: number;
  requestId: number;
  payload: Uint8Array;
}

/**
 * An HPS/1 server that holds requests until `batch` are waiting (or 20 ms pass), then answers them in
 * reverse order. `answer` may change a response: status, payload, or the id (to send a stray).
 */
export function startReversingHpsServer(
  batch: number,
  answer: (request: HpsRequest, index: number) => { status: number; payload: Uint8Array; requestId?: number } = (
    request,
  ) => ({
    status: FrameStatus.OK,
    payload: request.opcode === 0x01 ? request.payload : new Uint8Array(0),
  }),
): TestServer {
  let received = 0;
  interface HpsState {
    decoder: FrameDecoder;
    waiting: HpsRequest[];
    timer: Timer | null;
  }
  const flush = (socket: Socket<HpsState>): void => {
    const state = socket.data;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
    const frames = state.waiting.reverse().map((request) => {
      const response = answer(request, request.index);
      return encodeFrame(request.opcode, response.status, response.requestId ?? request.requestId, response.payload);
    });
    state.waiting = [];
    if (frames.length > 0) writeAll(socket, Buffer.concat(frames));
  };
  const listener = Bun.listen<HpsState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { decoder: new FrameDecoder(1 << 20), waiting: [], timer: null };
      },
      data(socket, chunk) {
        const state = socket.data;
        state.decoder.push(chunk, (opcode, _status, requestId, payload) => {
          state.waiting.push({ index: received++, opcode, requestId, payload: payload.slice() });
        });
        if (state.waiting.length >= batch) flush(socket);
        else if (state.waiting.length > 0 && state.timer === null) state.timer = setTimeout(() => flush(socket), 20);
      },
      close(socket) {
        if (socket.data.timer !== null) clearTimeout(socket.data.timer);
      },
    },
  });
  return handle(listener, () => received);
}
