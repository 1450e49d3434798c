// One load-tester connection: its socket, response codec, outstanding-request slots (send times) and unsent bytes.
import type { Socket } from "bun";
import type { LoadProtocol, ResponseCodec, ResponseSink } from "./protocol.ts";
import type { SendSchedule } from "./schedule.ts";
import { Tally } from "./tally.ts";

/** What a connection needs from the engine that owns it. */
export interface ConnectionOwner {
  readonly protocol: LoadProtocol;
  readonly pipeline: number;
  readonly requestBytes: number;
  readonly tallies: Float64Array;
  /** Time of the event being handled (performance.now() ms). */
  nowMs: number;
  /** Last time a request was sent or resolved. */
  lastProgressMs: number;
  /** A response was matched to its request. */
  finish(plannedMs: number, sentMs: number, outcome: number, status: number): void;
  /** A request ended without a response; `kind` is the Tally slot it counts under. */
  lose(plannedMs: number, kind: number): void;
  /** Bytes that answer no outstanding request. */
  stray(): void;
}

export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** One connection: its socket, response codec, outstanding-request slots and unsent bytes. */
export class LoadConnection<Owner extends ConnectionOwner = ConnectionOwner> implements ResponseSink {
  socket: Socket<LoadConnection<Owner>> | null = null;
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
    readonly engine: Owner,
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

export function repeat(template: Uint8Array, times: number): Uint8Array {
  const batch = new Uint8Array(template.length * times);
  for (let i = 0; i < times; i++) batch.set(template, i * template.length);
  return batch;
}
