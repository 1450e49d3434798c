// Per-connection state for Bun.listen sockets: a pooled object with its write queue, response batch buffer and
// read-pause state.
import type { Socket } from "bun";
import type { ProxyHeaderReader } from "../net/proxy-protocol.ts";
import type { FrameDecoder } from "./frame.ts";

/** A listener socket; `data` is undefined for a connection refused at open. */
export type TcpSocket = Socket<ConnectionState | undefined>;

const INITIAL_BATCH_BYTES = 4096;
/** A batch buffer grown past this by a burst is dropped on reset, so pooled idle states stay small. */
const KEPT_BATCH_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);

/** One open connection. Objects are reused through ConnectionPool; `generation` changes on every reuse. */
export class ConnectionState {
  /** Index in the pool's table of states; stable for the life of the object. */
  readonly slot: number;
  /** Bumped when the state is released, so work finishing for an old connection can tell it is stale. */
  generation = 0;
  socket: TcpSocket | null = null;
  /** The client's address: the socket peer, or the address a trusted proxy's PROXY header named. */
  remoteAddress = "";
  /** Admission admitted this connection (and counted it open); false while a PROXY header is awaited. */
  isAdmitted = false;
  /** Set while the PROXY header of a trusted proxy is still being read (net.proxy_protocol); null otherwise. */
  proxyReader: ProxyHeaderReader | null = null;
  /** Value of the listener's idle clock at the last read or drain. */
  lastActiveTick = 0;
  /** TLS listeners: the handshake is still going on (an idle cut then counts as a stalled handshake). */
  isHandshaking = false;
  /** Position in the pool's list of open states (for swap-removal). */
  openIndex = -1;

  /** Bytes the kernel did not take yet, in order; entries are views that stay valid (copied when their source is reused). */
  private readonly queue: Uint8Array[] = [];
  private queueHead = 0;
  queuedBytes = 0;

  /** Responses built during one event, written together by flushBatch. */
  batch: Uint8Array = EMPTY;
  batchBytes = 0;

  /** The socket is paused (socket.pause()): the server reads nothing from it until resumed. */
  isReadPaused = false;
  /**
   * Output waiting passed tcp.write_high_water_bytes and is not back under the low-water mark yet: reading stays
   * paused until a drain brings it there (see WriteQueue).
   */
  isOutputFull = false;
  /** The listener's idle clock at the last write progress (or when the queue started to hold bytes): the send timeout. */
  lastWriteTick = 0;

  /** HPS/1 only: the streaming decoder (kept across reuse) and requests handed to the runner and not answered yet. */
  decoder: FrameDecoder | null = null;
  inFlight = 0;
  /**
   * HPS/1: framing was lost (FrameStatus.BAD_FRAME or TOO_LARGE; 0 = no). Reading stopped; the answers of requests in
   * flight are still sent, then the connection-level error frame, then the connection closes.
   */
  failure = 0;
  /** Queued in the protocol's list of paused connections whose held frames are decoded at the end of this tick. */
  isResumeScheduled = false;
  /** Queued in the protocol's list of connections whose batch must be written at the end of this tick. */
  isFlushScheduled = false;
  /** HPS/1: in the protocol's list of connections that stopped reading at max_in_flight. */
  isWaitingAtLimit = false;

  /** Inside a data event: a close that happens meanwhile is finished by the data handler, not the close handler. */
  isInData = false;
  isClosed = false;
  /** The close event came during a data event; the data handler releases the state when it returns. */
  isCloseDeferred = false;
  /** Close once nothing is in flight and the queue is empty (peer half-closed, or a graceful stop). */
  closeWhenIdle = false;
  /** Close as soon as the queue is empty, in flight or not (framing was lost and the error frame is on its way). */
  closeWhenFlushed = false;
  /**
   * The shutdown deadline passed: what arrives is read and dropped (unread input would make the close a reset, which
   * discards frames not yet delivered), the output is written out, then a FIN; the client's close ends it.
   */
  isLingering = false;
  /** The client sent its FIN (its end event). */
  hasPeerEnded = false;
  /** Lingering: the server's FIN was sent (socket.shutdown()) after the last frame; the socket stays open to read. */
  isFinSent = false;

  constructor(slot: number) {
    this.slot = slot;
  }

  /** Room for `bytes` more in the batch buffer; returns the offset to write at. */
  reserve(bytes: number): number {
    const offset = this.batchBytes;
    const needed = offset + bytes;
    if (needed > this.batch.length) {
      let capacity = Math.max(this.batch.length * 2, INITIAL_BATCH_BYTES);
      while (capacity < needed) capacity *= 2;
      const grown = new Uint8Array(capacity);
      if (offset > 0) grown.set(this.batch.subarray(0, offset), 0);
      this.batch = grown;
    }
    this.batchBytes = needed;
    return offset;
  }

  isIdle(): boolean {
    return this.inFlight === 0 && this.queuedBytes === 0 && this.batchBytes === 0;
  }

  resetForReuse(): void {
    this.generation++;
    this.socket = null;
    this.remoteAddress = "";
    this.isAdmitted = false;
    this.isHandshaking = false;
    this.proxyReader = null;
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedBytes = 0;
    this.batchBytes = 0;
    if (this.batch.length > KEPT_BATCH_BYTES) this.batch = EMPTY;
    this.decoder?.reset();
    this.inFlight = 0;
    this.failure = 0;
    this.isReadPaused = false;
    this.isOutputFull = false;
    this.lastWriteTick = 0;
    this.isResumeScheduled = false;
    this.isFlushScheduled = false;
    this.isWaitingAtLimit = false;
    this.isInData = false;
    this.isClosed = false;
    this.isCloseDeferred = false;
    this.closeWhenIdle = false;
    this.closeWhenFlushed = false;
    this.isLingering = false;
    this.hasPeerEnded = false;
    this.isFinSent = false;
  }

  /** Internal to the write path: appends to the queue. */
  pushQueued(view: Uint8Array): void {
    this.queue.push(view);
    this.queuedBytes += view.length;
  }

  /** Writes queued bytes in order until the kernel stops taking them; returns bytes written. */
  writeQueued(socket: TcpSocket): number {
    const queue = this.queue;
    let written = 0;
    while (this.queueHead < queue.length) {
      const head = queue[this.queueHead]!;
      const taken = socket.write(head);
      if (taken < 0) return written;
      written += taken;
      this.queuedBytes -= taken;
      if (taken < head.length) {
        queue[this.queueHead] = head.subarray(taken);
        return written;
      }
      queue[this.queueHead++] = EMPTY;
    }
    queue.length = 0;
    this.queueHead = 0;
    return written;
  }
}

/** Free list of connection states plus the list of open ones (for idle sweeps and stop). */
export class ConnectionPool {
  private readonly free: ConnectionState[] = [];
  private readonly states: ConnectionState[] = [];
  readonly open: ConnectionState[] = [];

  acquire(): ConnectionState {
    const state = this.free.pop() ?? this.create();
    state.openIndex = this.open.length;
    this.open.push(state);
    return state;
  }

  release(state: ConnectionState): void {
    const index = state.openIndex;
    const last = this.open.pop()!;
    if (last !== state) {
      this.open[index] = last;
      last.openIndex = index;
    }
    state.openIndex = -1;
    state.resetForReuse();
    this.free.push(state);
  }

  /** The state in `slot` if it still belongs to the connection of `generation`; null when that connection closed. */
  live(slot: number, generation: number): ConnectionState | null {
    const state = this.states[slot];
    return state !== undefined && state.generation === generation && state.openIndex >= 0 ? state : null;
  }

  private create(): ConnectionState {
    const state = new ConnectionState(this.states.length);
    this.states.push(state);
    return state;
  }
}

/** Stops reading the socket (idempotent); TCP flow control then slows the client. */
export function pauseReading(connection: ConnectionState): void {
  // A lingering connection is read to the end (its input dropped), so that closing it sends no reset.
  if (connection.isReadPaused || connection.socket === null || connection.isLingering) return;
  connection.isReadPaused = true;
  connection.socket.pause();
}

/** Reads the socket again (idempotent). */
export function resumeReading(connection: ConnectionState): void {
  if (!connection.isReadPaused || connection.socket === null) return;
  connection.isReadPaused = false;
  connection.socket.resume();
}
