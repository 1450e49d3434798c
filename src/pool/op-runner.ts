// The interface the custom protocol uses to run an operation off the I/O path (the worker pool implements it).
// Its results carry HPS/1 status codes (src/protocol/hps1.ts), which the pool and the protocol share.

/**
 * Called exactly once per `run`. `status` is an HPS/1 status code (`FrameStatus`: OK, BUSY, INTERNAL, TIMEOUT,
 * UNKNOWN_OPCODE); `result` is only valid during the call (it may be a view into the shared arena): copy or write it
 * out before returning.
 */
export type OpDone = (token: number, status: number, result: Uint8Array) => void;

export interface OpRunner {
  /**
   * Runs `opcode` on `payload`. `payload` stays valid and unchanged until `done` is called.
   * `token` is passed back to `done` untouched (e.g. a connection slot and request index), so callers need no closure
   * per call.
   */
  run(opcode: number, payload: Uint8Array, token: number, done: OpDone): void;
  /**
   * Optional: like `run` with the payload given as bytes[start, start + length), which the runner copies before it
   * returns, so the caller needs neither a view of it (see bench/micro/frame.bench.ts) nor to keep it.
   */
  runRange?(opcode: number, bytes: Uint8Array, start: number, length: number, token: number, done: OpDone): void;
  /** Whether `opcode` runs through this runner (HASH and user opcodes 0x80-0xFF) rather than inline on the I/O thread. */
  handles(opcode: number): boolean;
  /** Tasks queued or running now. */
  pending(): number;
  /**
   * Optional: true while a new task would be answered busy at once (the runner's queue is full, or it is stopping).
   * The protocol then reads past a connection's max_in_flight, so that frames it would otherwise hold unread until
   * a task finishes get their busy answer now.
   */
  isSaturated?(): boolean;
}
