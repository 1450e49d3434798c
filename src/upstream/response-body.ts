// A proxied response's body on its way to the client: kept whole while it fits in what arrived with the head, else a
// ReadableStream Bun.serve pulls from, with the server paused while the client is slower.

/** Bytes of response body a stream buffers for a slow client before the server is paused. */
export const STREAM_HIGH_WATER_BYTES = 256 * 1024;

/** What the body tells the exchange that owns it. */
export interface BodyOwner {
  /** Stop (true) or restart (false) reading the server: the client is behind, or has caught up. */
  pauseServer(isPaused: boolean): void;
  /** The client went away before the body was complete. */
  clientGone(): void;
}

export class ResponseBody implements Bun.UnderlyingSource<Uint8Array> {
  private readonly owner: BodyOwner;
  /** Chunks that arrived before the stream started (most small bodies are one chunk). */
  private firstChunk: Uint8Array | null = null;
  private laterChunks: Uint8Array[] | null = null;
  private controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  private isServerPaused = false;
  private isEnded = false;

  constructor(owner: BodyOwner) {
    this.owner = owner;
  }

  /** A piece of the body from the server (a view of the bytes received). */
  add(chunk: Uint8Array): void {
    const controller = this.controller;
    if (controller === null) {
      if (this.firstChunk === null) this.firstChunk = chunk;
      else (this.laterChunks ??= []).push(chunk);
      return;
    }
    controller.enqueue(chunk);
    if (!this.isServerPaused && controller.desiredSize !== null && controller.desiredSize <= 0) {
      this.isServerPaused = true;
      this.owner.pauseServer(true);
    }
  }

  /** The whole body when it arrived before a stream was needed (null for none). */
  takeWhole(): Uint8Array | null {
    const first = this.firstChunk;
    const later = this.laterChunks;
    this.firstChunk = null;
    this.laterChunks = null;
    return later === null ? first : Buffer.concat([first!, ...later]);
  }

  /** A stream of the body, starting with what has arrived. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(this, { highWaterMark: STREAM_HIGH_WATER_BYTES, size: byteLengthOf });
  }

  /** The server sent the last byte. */
  end(): void {
    this.isEnded = true;
    this.isServerPaused = false;
    this.controller?.close();
  }

  /** The server failed mid-body: the client's response is cut short (Bun closes its connection). */
  fail(reason: string): void {
    this.isEnded = true;
    this.controller?.error(new Error(reason));
  }

  // ReadableStream's source.

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    const first = this.firstChunk;
    const later = this.laterChunks;
    this.firstChunk = null;
    this.laterChunks = null;
    if (first !== null) controller.enqueue(first);
    if (later !== null) for (const chunk of later) controller.enqueue(chunk);
    if (this.isEnded) controller.close();
  }

  pull(): void {
    if (!this.isServerPaused) return;
    this.isServerPaused = false;
    this.owner.pauseServer(false);
  }

  cancel(): void {
    if (!this.isEnded) this.owner.clientGone();
  }
}

function byteLengthOf(chunk: Uint8Array | undefined): number {
  return chunk === undefined ? 0 : chunk.byteLength;
}
