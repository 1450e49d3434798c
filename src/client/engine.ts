// One thread of the load tester: its connections over Bun.connect, closed or open model, timing, tallies, histograms.
import type { Socket, SocketHandler } from "bun";
import type { Histogram } from "hdr-histogram-js";
import { newLatencyHistogram, recordMillis } from "./latency.ts";
import { echoProtocol } from "./load-echo.ts";
import { hpsProtocol } from "./load-hps.ts";
import { httpProtocol } from "./load-http.ts";
import type { LoadOptions } from "./options.ts";
import { Outcome, STATUS_SLOTS, type LoadProtocol, type ResponseCodec, type ResponseSink } from "./protocol.ts";
import { SendSchedule } from "./schedule.ts";

/** Slots of a thread's tally array (Float64, one writer: the thread; the main thread reads it for progress). */
export const Tally = {
  /** measured requests written */
  sent: 0,
  /** measured requests answered (any outcome) */
  completed: 1,
  ok: 2,
  /** answered with a non-success status (HTTP non-2xx, HPS/1 status != OK) */
  nonOk: 3,
  /** answered with bytes that do not match the request or the framing */
  mismatch: 4,
  /** lost when the connection closed or reset with them outstanding */
  readErrors: 5,
  timeouts: 6,
  /** failed connection attempts (not requests) */
  connectErrors: 7,
  bytesRead: 8,
  bytesWritten: 9,
  /** open model: measured requests that went out more than LATE_SEND_MS after their planned time */
  lateSends: 10,
  /** gauge: requests in flight now */
  inFlight: 11,
  /** every response, warm-up included (progress line) */
  responsesAll: 12,
  /** 1 once measuring has begun */
  recording: 13,
  /** 1 when the thread has finished */
  done: 14,
  /** measured milliseconds (set at the end) */
  measuredMs: 15,
  /** open model: measured requests planned (sent or not) */
  planned: 16,
} as const;
export const TALLY_SLOTS = 20;

/** An open-model send later than this after its planned time counts as late. */
export const LATE_SEND_MS = 10;
/** Pause before reopening a connection whose connect failed. */
const RECONNECT_DELAY_MS = 100;
/** How often timeouts and the end of the run are checked in the closed model. */
const HOUSEKEEPING_MS = 50;
/** The open-model timer never sleeps longer than this (timeouts and the end are checked on every tick). */
const OPEN_TICK_MAX_MS = 20;

/** What one thread runs: the shared options plus its share of the connections and requests. */
export interface ThreadPlan {
  options: LoadOptions;
  threadIndex: number;
  /** Index of this thread's first connection among all connections (spreads the open-model phases). */
  firstConnection: number;
  connections: number;
  /** Measured requests for this thread in -n mode; null in duration mode. */
  totalRequests: number | null;
}

export interface ThreadResult {
  tallies: Float64Array;
  /** Responses by status code (HTTP 100-999; HPS/1 frame status 0-255). */
  statuses: Float64Array;
  /** From the actual send time. */
  latency: Histogram;
  /** Open model: from the planned send time (coordinated-omission corrected); null in the closed model. */
  corrected: Histogram | null;
  /** Set when the thread gave up (no connection could be opened, no progress). */
  fatal: string | null;
}

/** Splits connections and -n requests over threads as evenly as possible. */
export function planThreads(options: LoadOptions): ThreadPlan[] {
  const plans: ThreadPlan[] = [];
  let firstConnection = 0;
  for (let t = 0; t < options.threads; t++) {
    const connections =
      Math.floor(options.connections / options.threads) + (t < options.connections % options.threads ? 1 : 0);
    const totalRequests =
      options.totalRequests === null
        ? null
        : Math.floor(options.totalRequests / options.threads) + (t < options.totalRequests % options.threads ? 1 : 0);
    plans.push({ options, threadIndex: t, firstConnection, connections, totalRequests });
    firstConnection += connections;
  }
  return plans;
}

export function protocolFor(options: LoadOptions): LoadProtocol {
  switch (options.target.protocol) {
    case "http":
      return httpProtocol(options);
    case "echo":
      return echoProtocol(options);
    case "hps":
      return hpsProtocol(options);
  }
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

const Lost = { READ: Tally.readErrors, TIMEOUT: Tally.timeouts } as const;

/** One connection: its socket, response codec, outstanding-request slots and unsent bytes. */
class LoadConnection implements ResponseSink {
  socket: Socket<LoadConnection> | null = null;
  readonly codec: ResponseCodec;
  /** `pipeline` requests back to back; stamped per request, or shared by all connections when unstamped. */
  readonly batch: Uint8Array;
  private pending: Uint8Array = new Uint8Array(0);
  private pendingBytes = 0;
  inFlight = 0;
  // Outstanding requests. Ordered protocols use slots as a ring (head = oldest); others a free list, id -> slot.
  private readonly mask: number;
  private readonly slotBits: number;
  readonly sentMs: Float64Array;
  readonly plannedMs: Float64Array;
  private readonly slotId: Uint32Array;
  private readonly slotBusy: Uint8Array;
  private readonly freeSlots: Int32Array;
  private freeCount: number;
  private head = 0;
  private tail = 0;
  /** Ordered protocols: id of the next request (the codec expects the same numbering from 0). */
  private nextSequence = 0;
  /** Open model: index of the next request in this connection's schedule. */
  nextPlanned = 0;
  readonly schedule: SendSchedule | null = null;
  everOpened = false;
  connectFailures = 0;

  constructor(
    readonly engine: LoadEngine,
    readonly index: number,
    sharedBatch: Uint8Array | null,
    schedule: SendSchedule | null,
  ) {
    const protocol = engine.protocol;
    const pipeline = engine.pipeline;
    this.codec = protocol.newCodec();
    this.batch = sharedBatch ?? repeat(protocol.template, pipeline);
    const capacity = nextPowerOfTwo(pipeline);
    this.mask = capacity - 1;
    this.slotBits = Math.log2(capacity);
    this.sentMs = new Float64Array(capacity);
    this.plannedMs = new Float64Array(capacity);
    this.slotId = new Uint32Array(capacity);
    this.slotBusy = new Uint8Array(capacity);
    this.freeSlots = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.freeSlots[i] = capacity - 1 - i;
    this.freeCount = capacity;
    this.schedule = schedule;
  }

  /** Takes a slot for a request going out now, stamps its id into batch position `batchIndex`. */
  enqueue(plannedMs: number, nowMs: number, batchIndex: number): void {
    const engine = this.engine;
    let slot: number;
    let requestId: number;
    if (engine.protocol.ordered) {
      slot = this.tail & this.mask;
      this.tail = (this.tail + 1) >>> 0;
      requestId = this.nextSequence;
      this.nextSequence = (this.nextSequence + 1) >>> 0;
    } else {
      slot = this.freeSlots[--this.freeCount]!;
      // id = (generation << bits | slot) + 1: never 0 (connection-level), unique among outstanding requests
      const generation = ((this.slotId[slot]! >>> this.slotBits) + 1) & ((1 << (31 - this.slotBits)) - 1);
      requestId = ((generation << this.slotBits) | slot) >>> 0;
      this.slotId[slot] = requestId;
      requestId += 1;
      this.slotBusy[slot] = 1;
    }
    this.sentMs[slot] = nowMs;
    this.plannedMs[slot] = plannedMs;
    this.inFlight++;
    engine.tallies[Tally.inFlight]!++;
    if (engine.protocol.stamped) engine.protocol.stamp(this.batch, batchIndex * engine.requestBytes, requestId);
  }

  /** Writes the first `count` requests of the batch; what the socket does not take waits for drain. */
  flush(count: number, measured: number): void {
    const engine = this.engine;
    const bytes = count * engine.requestBytes;
    engine.tallies[Tally.sent]! += measured;
    engine.lastProgressMs = engine.nowMs;
    if (measured > 0) engine.tallies[Tally.bytesWritten]! += bytes;
    const socket = this.socket!;
    if (this.pendingBytes > 0) {
      this.appendPending(this.batch, 0, bytes);
      return;
    }
    const written = socket.write(this.batch, 0, bytes);
    if (written < bytes) this.appendPending(this.batch, Math.max(written, 0), bytes - Math.max(written, 0));
  }

  private appendPending(source: Uint8Array, offset: number, bytes: number): void {
    const needed = this.pendingBytes + bytes;
    if (needed > this.pending.length) {
      const grown = new Uint8Array(nextPowerOfTwo(needed));
      grown.set(this.pending.subarray(0, this.pendingBytes));
      this.pending = grown;
    }
    this.pending.set(source.subarray(offset, offset + bytes), this.pendingBytes);
    this.pendingBytes = needed;
  }

  drain(): void {
    if (this.pendingBytes === 0 || this.socket === null) return;
    const written = this.socket.write(this.pending, 0, this.pendingBytes);
    if (written <= 0) return;
    this.pending.copyWithin(0, written, this.pendingBytes);
    this.pendingBytes -= written;
  }

  completeNext(outcome: number, status: number): void {
    if (this.inFlight === 0 || !this.engine.protocol.ordered) {
      this.engine.stray();
      return;
    }
    const slot = this.head & this.mask;
    this.head = (this.head + 1) >>> 0;
    this.inFlight--;
    this.engine.finish(this.plannedMs[slot]!, this.sentMs[slot]!, outcome, status);
  }

  completeId(requestId: number, outcome: number, status: number): void {
    const slot = (requestId - 1) & this.mask;
    if (requestId === 0 || this.slotBusy[slot] !== 1 || this.slotId[slot] !== requestId - 1) {
      this.engine.stray();
      return;
    }
    this.slotBusy[slot] = 0;
    this.freeSlots[this.freeCount++] = slot;
    this.inFlight--;
    this.engine.finish(this.plannedMs[slot]!, this.sentMs[slot]!, outcome, status);
  }

  protocolError(): void {
    this.engine.stray();
  }

  /** Send time of the oldest outstanding request (Infinity when none). */
  oldestSentMs(): number {
    if (this.inFlight === 0) return Infinity;
    if (this.engine.protocol.ordered) return this.sentMs[this.head & this.mask]!;
    let oldest = Infinity;
    for (let slot = 0; slot <= this.mask; slot++)
      if (this.slotBusy[slot] === 1 && this.sentMs[slot]! < oldest) oldest = this.sentMs[slot]!;
    return oldest;
  }

  /** Every outstanding request is lost (counted under `kind`); the slots and codec start over. */
  loseAll(kind: number): void {
    const engine = this.engine;
    if (engine.protocol.ordered) {
      while (this.inFlight > 0) {
        const slot = this.head & this.mask;
        this.head = (this.head + 1) >>> 0;
        this.inFlight--;
        engine.lose(this.plannedMs[slot]!, kind);
      }
    } else {
      for (let slot = 0; slot <= this.mask; slot++) {
        if (this.slotBusy[slot] !== 1) continue;
        this.slotBusy[slot] = 0;
        this.freeSlots[this.freeCount++] = slot;
        this.inFlight--;
        engine.lose(this.plannedMs[slot]!, kind);
      }
    }
    this.head = this.tail = 0;
    this.nextSequence = 0;
    this.pendingBytes = 0;
    this.codec.reset();
  }
}

function repeat(template: Uint8Array, times: number): Uint8Array {
  const batch = new Uint8Array(template.length * times);
  for (let i = 0; i < times; i++) batch.set(template, i * template.length);
  return batch;
}

const HANDLERS: SocketHandler<LoadConnection> = {
  binaryType: "buffer",
  open(socket) {
    socket.data.engine.onOpen(socket.data, socket);
  },
  data(socket, chunk) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onData(connection, chunk as Buffer);
  },
  drain(socket) {
    if (socket.data.socket === socket) socket.data.drain();
  },
  close(socket) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onClose(connection);
  },
  end(socket) {
    // the peer sent FIN: treat as a close (our side closes too)
    socket.end();
  },
  error(socket) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onClose(connection);
  },
  connectError(socket, error) {
    socket.data.engine.onConnectError(socket.data, error);
  },
};

/** Runs one thread's share of the load and resolves with its tallies and histograms. */
export class LoadEngine {
  readonly protocol: LoadProtocol;
  readonly pipeline: number;
  readonly requestBytes: number;
  readonly tallies: Float64Array;
  readonly statuses = new Float64Array(STATUS_SLOTS);
  readonly latency = newLatencyHistogram();
  readonly corrected: Histogram | null;
  private readonly connections: LoadConnection[] = [];
  private readonly isOpen: boolean;
  private readonly timeoutMs: number;
  /** Requests planned at or after this time are measured (performance.now() ms). */
  private measureStartMs = Infinity;
  private endMs = Infinity;
  /** -n mode: measured requests not yet sent, and not yet resolved. */
  private unsent: number;
  private unresolved: number;
  private readonly limited: boolean;
  private stopping = false;
  private finished = false;
  private timer: Timer | null = null;
  /** Last time a request was sent or resolved (the no-progress guard). */
  lastProgressMs = 0;
  /** Time of the data event being handled (one clock read per chunk, shared by its responses), or of the last send. */
  nowMs = 0;
  private lastResolvedMs = 0;
  private fatal: string | null = null;
  private lastConnectError = "";
  private resolveRun: ((result: ThreadResult) => void) | null = null;
  private readonly tickHandler = (): void => this.tick();

  constructor(
    private readonly plan: ThreadPlan,
    tallies: Float64Array,
  ) {
    const options = plan.options;
    this.protocol = protocolFor(options);
    this.pipeline = options.pipeline;
    this.requestBytes = this.protocol.template.length;
    this.tallies = tallies;
    this.isOpen = options.ratePerSecond !== null;
    this.corrected = this.isOpen ? newLatencyHistogram() : null;
    this.timeoutMs = options.timeoutMs;
    this.limited = plan.totalRequests !== null;
    this.unsent = plan.totalRequests ?? 0;
    this.unresolved = plan.totalRequests ?? 0;
  }

  /** Opens every connection, waits for them (or their failure), then runs the load until the end condition. */
  async run(): Promise<ThreadResult> {
    const { options } = this.plan;
    const sharedBatch = this.protocol.stamped ? null : repeat(this.protocol.template, this.pipeline);
    const opened: Promise<unknown>[] = [];
    for (let i = 0; i < this.plan.connections; i++) {
      const connection = new LoadConnection(this, i, sharedBatch, null);
      this.connections.push(connection);
      opened.push(this.connect(connection));
    }
    await Promise.all(opened);
    if (this.connections.every((c) => !c.everOpened)) {
      this.fatal = `cannot connect to ${options.target.host}:${options.target.port}: ${this.lastConnectError}`;
      return this.result();
    }
    const startMs = performance.now();
    this.measureStartMs = startMs + options.warmupMs;
    if (options.durationMs !== null) this.endMs = this.measureStartMs + options.durationMs;
    if (options.warmupMs === 0) this.tallies[Tally.recording] = 1;
    this.lastProgressMs = startMs;
    if (this.isOpen) {
      const total = options.connections;
      for (const connection of this.connections) {
        (connection as { schedule: SendSchedule }).schedule = new SendSchedule(
          startMs,
          options.ratePerSecond!,
          total,
          this.plan.firstConnection + connection.index,
        );
      }
    }
    const done = new Promise<ThreadResult>((resolve) => (this.resolveRun = resolve));
    for (const connection of this.connections) {
      if (connection.socket !== null) this.sendMore(connection, startMs);
      else void this.connect(connection);
    }
    this.tick();
    return done;
  }

  private connect(connection: LoadConnection): Promise<unknown> {
    const { host, port } = this.plan.options.target;
    try {
      return Bun.connect({ hostname: host, port, socket: HANDLERS, data: connection }).catch(() => undefined);
    } catch (error) {
      this.onConnectError(connection, error as Error);
      return Promise.resolve();
    }
  }

  onOpen(connection: LoadConnection, socket: Socket<LoadConnection>): void {
    if (this.finished) {
      socket.terminate();
      return;
    }
    connection.socket = socket;
    connection.everOpened = true;
    connection.connectFailures = 0;
    socket.setNoDelay(true);
    if (this.resolveRun !== null) this.sendMore(connection, performance.now());
  }

  onConnectError(connection: LoadConnection, error: Error): void {
    this.tallies[Tally.connectErrors]!++;
    this.lastConnectError = error.message || String(error);
    connection.connectFailures++;
    if (this.resolveRun === null || this.finished) return; // during start-up: run() decides
    setTimeout(() => {
      if (!this.finished) void this.connect(connection);
    }, RECONNECT_DELAY_MS);
  }

  onData(connection: LoadConnection, chunk: Buffer): void {
    this.nowMs = performance.now();
    if (this.tallies[Tally.recording] === 1) this.tallies[Tally.bytesRead]! += chunk.length;
    if (!connection.codec.feed(chunk, connection)) {
      this.reopen(connection, Lost.READ);
      return;
    }
    if (this.finished) return;
    if (connection.codec.closeRequested) {
      this.reopen(connection, Lost.READ);
      return;
    }
    this.sendMore(connection, this.nowMs);
  }

  onClose(connection: LoadConnection): void {
    connection.socket = null;
    if (this.finished) return;
    this.nowMs = performance.now();
    connection.codec.finishOnClose(connection);
    connection.loseAll(Lost.READ);
    if (this.stopping && !this.isOpen) return;
    void this.connect(connection);
  }

  /** Closes the connection on purpose: its outstanding requests are lost as `kind`; a new one is opened. */
  private reopen(connection: LoadConnection, kind: number): void {
    const socket = connection.socket;
    connection.socket = null;
    connection.loseAll(kind);
    socket?.terminate();
    if (!this.finished) void this.connect(connection);
  }

  /** A response was matched to its request. */
  finish(plannedMs: number, sentMs: number, outcome: number, status: number): void {
    const tallies = this.tallies;
    tallies[Tally.inFlight]!--;
    tallies[Tally.responsesAll]!++;
    if (plannedMs < this.measureStartMs || this.finished) return;
    const nowMs = this.nowMs;
    tallies[Tally.completed]!++;
    tallies[outcome === Outcome.OK ? Tally.ok : outcome === Outcome.NON_OK ? Tally.nonOk : Tally.mismatch]!++;
    if (status >= 0 && status < STATUS_SLOTS) this.statuses[status]!++;
    recordMillis(this.latency, nowMs - sentMs);
    if (this.corrected !== null) recordMillis(this.corrected, nowMs - plannedMs);
    this.resolved(nowMs);
  }

  /** A request ended without a response (connection lost, timeout). */
  lose(plannedMs: number, kind: number): void {
    this.tallies[Tally.inFlight]!--;
    if (plannedMs < this.measureStartMs || this.finished) return;
    this.tallies[kind]!++;
    this.nowMs = performance.now();
    this.resolved(this.nowMs);
  }

  /** Bytes that answer no outstanding request. */
  stray(): void {
    if (this.tallies[Tally.recording] === 1 && !this.finished) this.tallies[Tally.mismatch]!++;
  }

  private resolved(nowMs: number): void {
    this.lastProgressMs = nowMs;
    this.lastResolvedMs = nowMs;
    if (this.limited && --this.unresolved === 0) this.end(nowMs);
  }

  /** Sends what the model allows on this connection now. */
  private sendMore(connection: LoadConnection, nowMs: number): void {
    if (connection.socket === null || this.finished) return;
    this.nowMs = nowMs;
    if (this.isOpen) this.sendDue(connection, nowMs);
    else this.topUp(connection, nowMs);
  }

  /** Closed model: keep `pipeline` requests in flight. */
  private topUp(connection: LoadConnection, nowMs: number): void {
    if (this.stopping) return;
    let count = this.pipeline - connection.inFlight;
    if (count <= 0) return;
    const measured = nowMs >= this.measureStartMs;
    if (measured && this.tallies[Tally.recording] === 0) this.tallies[Tally.recording] = 1;
    if (measured && this.limited) {
      if (count > this.unsent) count = this.unsent;
      if (count === 0) return;
      this.unsent -= count;
    }
    for (let i = 0; i < count; i++) connection.enqueue(nowMs, nowMs, i);
    connection.flush(count, measured ? count : 0);
  }

  /** Open model: send every request whose planned time has come, up to `pipeline` in flight. */
  private sendDue(connection: LoadConnection, nowMs: number): void {
    if (this.stopping || nowMs >= this.endMs) return;
    const schedule = connection.schedule!;
    const tallies = this.tallies;
    let count = 0;
    let measuredCount = 0;
    while (connection.inFlight < this.pipeline) {
      const plannedMs = schedule.plannedMs(connection.nextPlanned);
      if (plannedMs > nowMs || plannedMs >= this.endMs) break;
      const measured = plannedMs >= this.measureStartMs;
      if (measured) {
        if (this.limited) {
          if (this.unsent === 0) break;
          this.unsent--;
        }
        measuredCount++;
        if (nowMs - plannedMs > LATE_SEND_MS) tallies[Tally.lateSends]!++;
      }
      connection.enqueue(plannedMs, nowMs, count);
      connection.nextPlanned++;
      count++;
    }
    if (count > 0) connection.flush(count, measuredCount);
  }

  /** Timer: open-model sends, timeouts, the end of the run. */
  private tick(): void {
    this.timer = null;
    if (this.finished) return;
    const nowMs = performance.now();
    const tallies = this.tallies;
    if (tallies[Tally.recording] === 0 && nowMs >= this.measureStartMs) tallies[Tally.recording] = 1;
    // timeouts
    for (const connection of this.connections) {
      if (connection.inFlight > 0 && nowMs - connection.oldestSentMs() > this.timeoutMs)
        this.reopen(connection, Lost.TIMEOUT);
    }
    if (this.finished) return;
    // end of a timed run
    if (nowMs >= this.endMs) {
      if (!this.isOpen) {
        this.end(this.endMs);
        return;
      }
      // open model: nothing more goes out; the requests in flight get until their timeout to answer
      this.stopping = true;
      if (this.connections.every((c) => c.inFlight === 0)) {
        this.end(this.endMs);
        return;
      }
    }
    // no progress at all for two timeouts (e.g. the server vanished and reconnects keep failing)
    if (nowMs - this.lastProgressMs > 2 * this.timeoutMs + RECONNECT_DELAY_MS) {
      this.fatal = `no progress for ${Math.round((nowMs - this.lastProgressMs) / 1000)} s${this.lastConnectError ? ` (last connect error: ${this.lastConnectError})` : ""}`;
      this.end(this.limited ? this.lastResolvedMs || nowMs : Math.min(nowMs, this.endMs));
      return;
    }
    let delayMs = HOUSEKEEPING_MS;
    if (this.isOpen) {
      let nextDueMs = Infinity;
      for (const connection of this.connections) {
        this.sendMore(connection, nowMs);
        if (connection.socket !== null && connection.inFlight < this.pipeline) {
          const due = connection.schedule!.plannedMs(connection.nextPlanned);
          if (due < nextDueMs) nextDueMs = due;
        }
      }
      delayMs = Math.max(0, Math.min(OPEN_TICK_MAX_MS, nextDueMs - performance.now()));
    }
    this.timer = setTimeout(this.tickHandler, delayMs);
  }

  private end(lastMs: number): void {
    if (this.finished) return;
    const measuredMs = Math.max(
      0,
      (this.limited && this.endMs === Infinity ? lastMs : Math.min(lastMs, this.endMs)) - this.measureStartMs,
    );
    this.tallies[Tally.measuredMs] = measuredMs;
    if (this.isOpen) {
      let planned = 0;
      for (const connection of this.connections) {
        const schedule = connection.schedule!;
        const endIndex = this.endMs === Infinity ? connection.nextPlanned : schedule.countBefore(this.endMs);
        planned += Math.max(0, endIndex - schedule.countBefore(this.measureStartMs));
      }
      this.tallies[Tally.planned] = this.limited ? this.plan.totalRequests! : planned;
    }
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const connection of this.connections) {
      const socket = connection.socket;
      connection.socket = null;
      socket?.terminate();
    }
    this.tallies[Tally.inFlight] = 0;
    this.tallies[Tally.done] = 1;
    this.resolveRun?.(this.result());
  }

  private result(): ThreadResult {
    this.tallies[Tally.done] = 1;
    return {
      tallies: this.tallies,
      statuses: this.statuses,
      latency: this.latency,
      corrected: this.corrected,
      fatal: this.fatal,
    };
  }
}
