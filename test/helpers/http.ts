// Test helpers for the http protocol: a site in a temp directory, a running listener, raw-socket exchanges.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigOverrides } from "../../src/config/schema.ts";
import type { Listener, ServerContext } from "../../src/context.ts";
import { startHttp } from "../../src/http/serve.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import { Stats } from "../../src/stats/stats.ts";
import { loadTlsState } from "../../src/tls/tls-state.ts";
import { testConfig } from "./common.ts";

export function makeTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export interface RunningHttp {
  readonly listener: Listener;
  readonly context: ServerContext;
  readonly port: number;
  readonly base: string;
  stop(): Promise<void>;
}

/** Starts the http listener on 127.0.0.1:0 serving `root` with the given overrides (and a silent logger unless given). */
export async function startSite(
  root: string,
  overrides: ConfigOverrides = {},
  logger: Logger = Logger.silent(),
): Promise<RunningHttp> {
  const config = testConfig({ ...overrides, http: { root, ...overrides.http } });
  const stats = Stats.create();
  const gauges = new Map();
  const tls = await loadTlsState(config);
  const admission = new Admission(config, stats, gauges);
  const context: ServerContext = { config, stats, logger, gauges, admission, tls };
  const listener = await startHttp(context);
  return {
    listener,
    context,
    port: listener.port,
    base: `${tls === null ? "http" : "https"}://127.0.0.1:${listener.port}`,
    stop: () => listener.stop({ graceful: false, timeoutMs: 0 }),
  };
}

/** One parsed HTTP/1.1 response. Header names are lower case. */
export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
}

/**
 * Parses consecutive responses from `bytes`. `noBody[i]` marks responses that carry no body whatever their
 * Content-Length says (answers to HEAD). Returns the complete responses parsed so far.
 */
export function parseResponses(bytes: Uint8Array, noBody: readonly boolean[] = []): RawResponse[] {
  const text = Buffer.from(bytes).toString("latin1");
  const responses: RawResponse[] = [];
  let offset = 0;
  while (offset < text.length) {
    const headerEnd = text.indexOf("\r\n\r\n", offset);
    if (headerEnd < 0) break;
    const lines = text.slice(offset, headerEnd).split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const bodyless =
      noBody[responses.length] === true || status === 304 || status === 204 || (status >= 100 && status < 200);
    const bodyStart = headerEnd + 4;
    if (!bodyless && headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
      const chunked = parseChunked(bytes, bodyStart);
      if (chunked === null) break;
      responses.push({ status, headers, body: chunked.body });
      offset = chunked.end;
      continue;
    }
    const length = bodyless ? 0 : Number(headers.get("content-length") ?? 0);
    if (bodyStart + length > text.length) break;
    responses.push({ status, headers, body: bytes.slice(bodyStart, bodyStart + length) });
    offset = bodyStart + length;
  }
  return responses;
}

/** Decodes a chunked body starting at `start`; null when incomplete. */
function parseChunked(bytes: Uint8Array, start: number): { body: Uint8Array; end: number } | null {
  const text = Buffer.from(bytes).toString("latin1");
  const pieces: Uint8Array[] = [];
  let at = start;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const lineEnd = text.indexOf("\r\n", at);
    if (lineEnd < 0) return null;
    const size = parseInt(text.slice(at, lineEnd), 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(text.slice(at, lineEnd))}`);
    const dataStart = lineEnd + 2;
    if (size === 0) {
      const trailerEnd = text.indexOf("\r\n", dataStart);
      if (trailerEnd < 0) return null;
      return { body: Buffer.concat(pieces), end: trailerEnd + 2 };
    }
    if (dataStart + size + 2 > bytes.length) return null;
    pieces.push(bytes.slice(dataStart, dataStart + size));
    at = dataStart + size + 2;
  }
  throw new Error("chunked body with too many chunks");
}

/** Result of a raw exchange: every byte received and whether the server closed the connection. */
export interface RawExchange {
  bytes: Uint8Array;
  closedByServer: boolean;
}

/**
 * Writes `request` on a fresh TCP connection and collects bytes until `isDone(bytes)` holds or the server closes,
 * bounded by `timeoutMs`. The connection is then closed by us (if still open).
 */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  isDone: (bytes: Uint8Array) => boolean,
  timeoutMs = 5000,
): Promise<RawExchange> {
  const chunks: Uint8Array[] = [];
  let closedByServer = false;
  let total = 0;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const collected = () => {
    const all = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return all;
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_socket, data) {
        chunks.push(new Uint8Array(data));
        total += data.length;
        if (isDone(collected())) finish();
      },
      close() {
        closedByServer = true;
        finish();
      },
      error() {
        closedByServer = true;
        finish();
      },
    },
  });
  socket.write(request);
  const timer = setTimeout(finish, timeoutMs);
  await done;
  clearTimeout(timer);
  const bytes = collected();
  const serverClosed = closedByServer; // read before end(): ending fires our own close callback
  socket.end();
  return { bytes, closedByServer: serverClosed };
}

/** Sends one raw request and returns its parsed response (HEAD when the request starts with HEAD). */
export async function rawRequest(port: number, request: string): Promise<RawResponse> {
  const isHead = request.startsWith("HEAD ");
  const exchange = await rawExchange(port, request, (bytes) => parseResponses(bytes, [isHead]).length >= 1);
  const [response] = parseResponses(exchange.bytes, [isHead]);
  if (response === undefined)
    throw new Error(
      `no complete response to ${JSON.stringify(request.slice(0, 60))}; got ${exchange.bytes.length} bytes`,
    );
  return response;
}

/** A GET of `target` on a raw socket (the path goes out byte for byte, unlike fetch which normalises it). */
export function rawGet(port: number, target: string, extraHeaders = ""): Promise<RawResponse> {
  return rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: t\r\n${extraHeaders}\r\n`);
}

export function text(body: Uint8Array): string {
  return new TextDecoder().decode(body);
}

/** A raw TCP connection kept open across requests: one request at a time, each awaited to its full response. */
export interface KeptConnection {
  /** Writes `request` and waits (bounded) for its complete response. */
  request(request: string, timeoutMs?: number): Promise<RawResponse>;
  /** Resolves once the server has closed the connection (bounded; false when it did not in time). */
  closed(timeoutMs?: number): Promise<boolean>;
  end(): void;
}

export async function keptConnection(port: number): Promise<KeptConnection> {
  let received = new Uint8Array(0);
  let consumed = 0;
  let serverClosed = false;
  let wake: () => void = () => {};
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_socket, data) {
        const next = new Uint8Array(received.length + data.length);
        next.set(received);
        next.set(data, received.length);
        received = next;
        wake();
      },
      close() {
        serverClosed = true;
        wake();
      },
      error() {
        serverClosed = true;
        wake();
      },
    },
  });
  const waitUntil = async (done: () => boolean, timeoutMs: number): Promise<boolean> => {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, leftMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return true;
  };
  return {
    async request(request, timeoutMs = 5000) {
      const isHead = request.startsWith("HEAD ");
      socket.write(request);
      let parsed: RawResponse[] = [];
      await waitUntil(
        () => (parsed = parseResponses(received.subarray(consumed), [isHead])).length >= 1 || serverClosed,
        timeoutMs,
      );
      const [response] = parsed;
      if (response === undefined)
        throw new Error(`no response to ${JSON.stringify(request.slice(0, 60))} (server closed: ${serverClosed})`);
      consumed = received.length; // one request at a time: everything received belongs to this response
      return response;
    },
    closed: (timeoutMs = 5000) => waitUntil(() => serverClosed, timeoutMs),
    end: () => void socket.end(),
  };
}
