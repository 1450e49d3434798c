// Raw loopback clients for the stress run: many held HTTP connections, one-shot exchanges, throttled downloads, admin reads.
import type { Socket } from "bun";
import { connect as netConnect, type Socket as NetSocket } from "node:net";
import type { CounterName } from "../../src/stats/stats.ts";

const HEADER_END = Buffer.from("\r\n\r\n");

/** An HTTP/1.1 GET with keep-alive (or close). */
export function httpGet(path: string, connectionClose = false): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: stress\r\n${connectionClose ? "Connection: close\r\n" : ""}\r\n`);
}

/** Parses one complete response at the start of `buffer`: its status and total length, or null when incomplete. */
export function parseResponse(buffer: Buffer): { status: number; totalBytes: number; bodyBytes: number } | null {
  const end = buffer.indexOf(HEADER_END);
  if (end < 0) return null;
  const head = buffer.subarray(0, end).toString("latin1");
  const status = Number(head.slice(9, 12));
  const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const bodyBytes = match === null ? 0 : Number(match[1]);
  const totalBytes = end + 4 + bodyBytes;
  return buffer.length >= totalBytes ? { status, totalBytes, bodyBytes } : null;
}

/** Per-connection state of a held keep-alive connection. */
interface Held {
  socket: Socket<Held> | null;
  pending: Buffer;
  waiting: ((status: number) => void) | null;
  isClosed: boolean;
}

/** Many keep-alive HTTP connections held open at once; each can be asked for one more request. */
export class HeldConnections {
  readonly connections: Held[] = [];
  connectFailures = 0;
  closedByPeer = 0;

  constructor(private readonly port: number) {}

  /** Opens `count` connections, `parallel` connects at a time (the listen backlog is 512), each answering one GET. */
  async open(
    count: number,
    parallel: number,
    path: string,
    deadlineMs: number,
  ): Promise<{ opened: number; ok: number }> {
    let next = 0;
    let ok = 0;
    const request = httpGet(path);
    const worker = async () => {
      while (next < count && Date.now() < deadlineMs) {
        next++;
        const held: Held = { socket: null, pending: Buffer.alloc(0), waiting: null, isClosed: false };
        try {
          held.socket = await Bun.connect<Held>({
            hostname: "127.0.0.1",
            port: this.port,
            data: held,
            socket: HELD_HANDLERS,
          });
        } catch {
          this.connectFailures++;
          continue;
        }
        this.connections.push(held);
        if ((await ask(held, request, deadlineMs - Date.now())) === 200) ok++;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    return { opened: this.connections.length, ok };
  }

  /** Sends one more GET on every open connection; resolves with how many answered 200. */
  async askAll(path: string, timeoutMs: number): Promise<number> {
    const request = httpGet(path);
    const statuses = await Promise.all(this.connections.map((held) => ask(held, request, timeoutMs)));
    return statuses.filter((status) => status === 200).length;
  }

  stillOpen(): number {
    return this.connections.filter((held) => !held.isClosed).length;
  }

  closeAll(): void {
    for (const held of this.connections) held.socket?.terminate();
  }
}

/** Writes a request and waits for its response status (0 on close or timeout). */
function ask(held: Held, request: Buffer, timeoutMs: number): Promise<number> {
  if (held.isClosed || held.socket === null) return Promise.resolve(0);
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => {
        held.waiting = null;
        resolve(0);
      },
      Math.max(1, timeoutMs),
    );
    held.waiting = (status) => {
      clearTimeout(timer);
      resolve(status);
    };
    held.socket!.write(request);
  });
}

const HELD_HANDLERS = {
  binaryType: "buffer" as const,
  data(socket: Socket<Held>, chunk: Buffer) {
    const held = socket.data;
    held.pending = held.pending.length === 0 ? chunk : Buffer.concat([held.pending, chunk]);
    const parsed = parseResponse(held.pending);
    if (parsed === null) return;
    held.pending = held.pending.subarray(parsed.totalBytes);
    const waiting = held.waiting;
    held.waiting = null;
    waiting?.(parsed.status);
  },
  close(socket: Socket<Held>) {
    const held = socket.data;
    held.isClosed = true;
    held.waiting?.(0);
    held.waiting = null;
  },
  error() {},
};

export interface ExchangeResult {
  /** Everything received until the peer closed or the time ran out. */
  received: Buffer;
  /** Whether the peer closed the connection (FIN or reset) within the time. */
  closedByPeer: boolean;
  connectFailed: boolean;
}

/**
 * Connects, writes `request` (or nothing; then half-closes when asked), and collects what comes back. Stops at the
 * peer's close, at the time limit, or once `enough(received)` says so; then closes its side.
 */
export function exchange(
  port: number,
  request: Uint8Array | null,
  timeoutMs: number,
  enough: (received: Buffer) => boolean = () => false,
  halfClose = false,
): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const socket = netConnect({ host: "127.0.0.1", port });
    const finish = (closedByPeer: boolean, connectFailed = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(chunks, size), closedByPeer, connectFailed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("connect", () => {
      if (request !== null && request.length > 0) socket.write(request);
      if (halfClose) socket.end();
    });
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (enough(Buffer.concat(chunks, size))) finish(false);
    });
    socket.on("end", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("error", (error: NodeJS.ErrnoException) => finish(true, error.code === "ECONNREFUSED"));
  });
}

/** A GET of a large file whose reader stops reading once the response head has arrived (a slow reader); counts body bytes exactly. */
export class Download {
  readonly socket: NetSocket;
  /** Resolves when the response head has arrived (the response is under way); the socket is paused from then on. */
  readonly headArrived: Promise<void>;
  private onHead: () => void = () => {};
  status = 0;
  contentLength = -1;
  bodyBytes = 0;
  /** Bytes of the response head still being collected. */
  private head: Buffer | null = Buffer.alloc(0);
  readonly done: Promise<{ status: number; contentLength: number; bodyBytes: number; closedEarly: boolean }>;

  constructor(port: number, path: string) {
    this.socket = netConnect({ host: "127.0.0.1", port });
    this.headArrived = new Promise((resolve) => {
      this.onHead = resolve;
    });
    this.socket.on("connect", () => this.socket.write(httpGet(path, true)));
    this.done = new Promise((resolve) => {
      const finish = () =>
        resolve({
          status: this.status,
          contentLength: this.contentLength,
          bodyBytes: this.bodyBytes,
          closedEarly: !this.isComplete(),
        });
      this.socket.on("close", finish);
      this.socket.on("error", () => {});
    });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  isComplete(): boolean {
    return this.contentLength >= 0 && this.bodyBytes === this.contentLength;
  }

  private onData(chunk: Buffer): void {
    if (this.head === null) {
      this.bodyBytes += chunk.length;
      return;
    }
    this.head = Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf(HEADER_END);
    if (end < 0) return;
    const text = this.head.subarray(0, end).toString("latin1");
    this.status = Number(text.slice(9, 12));
    const match = /\r\ncontent-length:\s*(\d+)/i.exec(text);
    this.contentLength = match === null ? -1 : Number(match[1]);
    this.bodyBytes = this.head.length - end - 4;
    this.head = null;
    this.socket.pause();
    this.onHead();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Reads GET /stats from the admin listener (null when it does not answer). */
export async function adminStats(adminPort: number): Promise<AdminSnapshot | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${adminPort}/stats`, { signal: AbortSignal.timeout(3000) });
    return response.ok ? ((await response.json()) as AdminSnapshot) : null;
  } catch {
    return null;
  }
}

/** The parts of the /stats snapshot the stress run reads. */
export interface AdminSnapshot {
  counters: Record<CounterName, number>;
  process: { fileDescriptorsUsed: number; rssBytes: number; pid: number };
  gauges: Record<string, Record<string, number>>;
}

/** Waits until `check` returns true (polled every 50 ms) or the time is up; returns the last result. */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await Bun.sleep(50);
  }
}

/** Per-connection state of a held raw TCP connection that answers one fixed-size reply per request. */
interface HeldRaw {
  received: number;
  expected: number;
  waiting: ((ok: boolean) => void) | null;
  isClosed: boolean;
}

const HELD_RAW_HANDLERS = {
  binaryType: "buffer" as const,
  data(socket: Socket<HeldRaw>, chunk: Buffer) {
    const held = socket.data;
    held.received += chunk.length;
    if (held.waiting !== null && held.received >= held.expected) {
      const waiting = held.waiting;
      held.waiting = null;
      waiting(true);
    }
  },
  close(socket: Socket<HeldRaw>) {
    const held = socket.data;
    held.isClosed = true;
    held.waiting?.(false);
    held.waiting = null;
  },
  error() {},
};

/** Many raw TCP connections (echo or HPS/1) held open; each sends `request` and waits for `replyBytes` back. */
export class HeldRawConnections {
  private readonly sockets: Array<Socket<HeldRaw>> = [];
  connectFailures = 0;

  constructor(
    private readonly port: number,
    private readonly request: Uint8Array,
    private readonly replyBytes: number,
  ) {}

  /** Opens `count` connections, `parallel` at a time, each completing one exchange; resolves with how many did. */
  async open(count: number, parallel: number, deadlineMs: number): Promise<number> {
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < count && Date.now() < deadlineMs) {
        next++;
        const held: HeldRaw = { received: 0, expected: 0, waiting: null, isClosed: false };
        let socket: Socket<HeldRaw>;
        try {
          socket = await Bun.connect<HeldRaw>({
            hostname: "127.0.0.1",
            port: this.port,
            data: held,
            socket: HELD_RAW_HANDLERS,
          });
        } catch {
          this.connectFailures++;
          continue;
        }
        this.sockets.push(socket);
        if (await this.exchangeOn(socket, deadlineMs - Date.now())) ok++;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    return ok;
  }

  /** One more exchange on every held connection; resolves with how many completed. */
  async exchangeAll(timeoutMs: number): Promise<number> {
    const results = await Promise.all(this.sockets.map((socket) => this.exchangeOn(socket, timeoutMs)));
    return results.filter(Boolean).length;
  }

  get opened(): number {
    return this.sockets.length;
  }

  stillOpen(): number {
    return this.sockets.filter((socket) => !socket.data.isClosed).length;
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.terminate();
  }

  private exchangeOn(socket: Socket<HeldRaw>, timeoutMs: number): Promise<boolean> {
    const held = socket.data;
    if (held.isClosed) return Promise.resolve(false);
    held.expected += this.replyBytes;
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          held.waiting = null;
          resolve(false);
        },
        Math.max(1, timeoutMs),
      );
      held.waiting = (ok) => {
        clearTimeout(timer);
        resolve(ok);
      };
      socket.write(this.request);
    });
  }
}
