// Connection churn for the stress run: many short connections (echo: 64 B there and back; HTTP: one GET with Connection: close).
import type { Socket } from "bun";
import { httpGet, parseResponse } from "./clients.ts";

export interface ChurnResult {
  /** Connections that completed their exchange correctly. */
  ok: number;
  connectFailures: number;
  /** Exchanges that closed early or returned the wrong bytes. */
  badExchanges: number;
  seconds: number;
}

interface Short {
  received: Buffer;
  done: (ok: boolean) => void;
  finished: boolean;
}

const ECHO_MESSAGE = Buffer.alloc(64, 0x5a);
/** A short connection that has not finished by then counts as bad (and is cut). */
const EXCHANGE_TIMEOUT_MS = 5000;

function settle(short: Short, ok: boolean): void {
  if (short.finished) return;
  short.finished = true;
  short.done(ok);
}

const ECHO_HANDLERS = {
  binaryType: "buffer" as const,
  open(socket: Socket<Short>) {
    socket.write(ECHO_MESSAGE);
  },
  data(socket: Socket<Short>, chunk: Buffer) {
    const short = socket.data;
    short.received = short.received.length === 0 ? chunk : Buffer.concat([short.received, chunk]);
    if (short.received.length >= ECHO_MESSAGE.length) {
      settle(short, short.received.equals(ECHO_MESSAGE));
      socket.end();
    }
  },
  close(socket: Socket<Short>) {
    settle(socket.data, false);
  },
  error() {},
};

const HTTP_REQUEST = httpGet("/small.txt", true);

const HTTP_HANDLERS = {
  binaryType: "buffer" as const,
  open(socket: Socket<Short>) {
    socket.write(HTTP_REQUEST);
  },
  data(socket: Socket<Short>, chunk: Buffer) {
    const short = socket.data;
    short.received = short.received.length === 0 ? chunk : Buffer.concat([short.received, chunk]);
  },
  close(socket: Socket<Short>) {
    const parsed = parseResponse(socket.data.received);
    settle(socket.data, parsed !== null && parsed.status === 200);
  },
  error() {},
};

/** Runs up to `total` short connections, `parallel` at a time, until done or the deadline; the client closes first for echo, the server for HTTP. */
export async function churn(
  kind: "echo" | "http",
  port: number,
  total: number,
  parallel: number,
  deadlineMs: number,
): Promise<ChurnResult> {
  const result: ChurnResult = { ok: 0, connectFailures: 0, badExchanges: 0, seconds: 0 };
  const startedMs = performance.now();
  const handlers = kind === "echo" ? ECHO_HANDLERS : HTTP_HANDLERS;
  let started = 0;
  const worker = async () => {
    while (started < total && Date.now() < deadlineMs) {
      started++;
      const { promise, resolve } = Promise.withResolvers<boolean>();
      const short: Short = { received: Buffer.alloc(0), done: resolve, finished: false };
      let socket: Socket<Short>;
      try {
        socket = await Bun.connect<Short>({ hostname: "127.0.0.1", port, data: short, socket: handlers });
      } catch {
        result.connectFailures++;
        continue;
      }
      const timer = setTimeout(() => {
        settle(short, false);
        socket.terminate();
      }, EXCHANGE_TIMEOUT_MS);
      if (await promise) result.ok++;
      else result.badExchanges++;
      clearTimeout(timer);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  result.seconds = (performance.now() - startedMs) / 1000;
  return result;
}
