// HPS/1 client over Bun.connect: pipelined requests matched by request id, per-request timeouts, errors to every pending request.
import type { Socket, TLSOptions } from "bun";
import { FrameDecoder, encodeFrame } from "../tcp/frame.ts";

export interface HpsResponse {
  status: number;
  payload: Uint8Array;
}

export interface HpsConnectOptions {
  /** Time allowed for the TCP connect, and the default timeout of every request; absent = no timeout. */
  timeoutMs?: number;
  /** Largest response length field accepted; absent = anything the 32-bit field can carry. */
  maxResponseBytes?: number;
  /**
   * Speak TLS (the server has tls.enabled): true verifies the server against the system's CAs; an object gives Bun's
   * options (`ca` for a private CA, `cert`/`key` for a client certificate, `serverName`, `rejectUnauthorized`).
   */
  tls?: boolean | TLSOptions;
}

interface PendingRequest {
  resolve: (response: HpsResponse) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const LARGEST_LENGTH_FIELD = 0xffff_ffff;
const MAX_REQUEST_ID = 0xffff_ffff;

/** One HPS/1 connection. Requests may be pipelined; responses are matched by id, so any order is fine. */
export class HpsClient implements Disposable {
  private socket: Socket<undefined> | null = null;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, PendingRequest>();
  private readonly defaultTimeoutMs: number | undefined;
  private nextRequestId = 1;
  /** Frames not yet taken by the kernel, written in order on drain. */
  private readonly outgoing: Uint8Array[] = [];
  private isFlushQueued = false;
  private failure: Error | null = null;
  private readonly onFrame = (
    _opcode: number,
    status: number,
    requestId: number,
    bytes: Uint8Array,
    payloadStart: number,
    payloadBytes: number,
  ): void => {
    const payloadEnd = payloadStart + payloadBytes;
    if (requestId === 0 && status !== 0) {
      this.fail(
        new Error(
          `server closed the connection: status ${status}: ${new TextDecoder().decode(bytes.subarray(payloadStart, payloadEnd))}`,
        ),
      );
      return;
    }
    const request = this.pending.get(requestId);
    if (request === undefined) return; // timed out earlier: the late answer is dropped
    this.pending.delete(requestId);
    if (request.timer !== undefined) clearTimeout(request.timer);
    request.resolve({ status, payload: bytes.slice(payloadStart, payloadEnd) });
  };
  private readonly flush = (): void => {
    this.isFlushQueued = false;
    this.writeOutgoing();
  };

  private constructor(options: HpsConnectOptions) {
    this.defaultTimeoutMs = options.timeoutMs;
    this.decoder = new FrameDecoder(options.maxResponseBytes ?? LARGEST_LENGTH_FIELD);
  }

  static async connect(host: string, port: number, options: HpsConnectOptions = {}): Promise<HpsClient> {
    const client = new HpsClient(options);
    const connecting = Bun.connect({
      hostname: host,
      port,
      ...(options.tls === undefined || options.tls === false ? {} : { tls: options.tls }),
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => client.onData(chunk),
        drain: () => client.writeOutgoing(),
        close: (_socket, error) => client.fail(error ?? new Error("connection closed by the server")),
        error: (_socket, error) => client.fail(error),
        end: () => client.fail(new Error("connection closed by the server")),
      },
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const socket =
        options.timeoutMs === undefined
          ? await connecting
          : await Promise.race([
              connecting,
              new Promise<never>((_, reject) => {
                timer = setTimeout(
                  () => reject(new Error(`connect to ${host}:${port} timed out after ${options.timeoutMs} ms`)),
                  options.timeoutMs,
                );
              }),
            ]);
      client.socket = socket;
      socket.setNoDelay(true);
      return client;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one request; resolves with the response's status and payload (a copy), rejects on timeout or connection loss. */
  request(opcode: number, payload?: Uint8Array, options: { timeoutMs?: number } = {}): Promise<HpsResponse> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const requestId = this.takeRequestId();
    const frame = encodeFrame(opcode, 0, requestId, payload);
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<HpsResponse>((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(requestId);
              reject(new Error(`request ${requestId} (opcode ${opcode}) timed out after ${timeoutMs} ms`));
            }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.outgoing.push(frame);
      if (!this.isFlushQueued) {
        this.isFlushQueued = true;
        queueMicrotask(this.flush);
      }
    });
  }

  /** Requests sent and not answered yet. */
  pendingRequests(): number {
    return this.pending.size;
  }

  close(): void {
    this.fail(new Error("connection closed by the client"));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private takeRequestId(): number {
    // Id 0 is reserved for connection-level errors; skip ids still waiting for an answer after a wrap.
    for (;;) {
      const id = this.nextRequestId;
      this.nextRequestId = id === MAX_REQUEST_ID ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private onData(chunk: Uint8Array): void {
    const status = this.decoder.pushRanges(chunk, this.onFrame);
    if (status !== 0) this.fail(new Error(`response framing lost (status ${status}); closing`));
  }

  /** Writes queued frames as one buffer; what the kernel does not take waits for drain. */
  private writeOutgoing(): void {
    const socket = this.socket;
    const outgoing = this.outgoing;
    if (socket === null || outgoing.length === 0) return;
    const data = outgoing.length === 1 ? outgoing[0]! : Buffer.concat(outgoing);
    outgoing.length = 0;
    const taken = socket.write(data);
    if (taken < 0) {
      this.fail(new Error("connection closed"));
      return;
    }
    if (taken < data.length) outgoing.push(data.subarray(taken));
  }

  private fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.outgoing.length = 0;
    const socket = this.socket;
    this.socket = null;
    socket?.end();
    for (const request of this.pending.values()) {
      if (request.timer !== undefined) clearTimeout(request.timer);
      request.reject(error);
    }
    this.pending.clear();
  }
}
