// What the load engine needs from a wire protocol: one request's bytes and a per-connection response checker.

/** How one response ended. */
export const Outcome = { OK: 0, NON_OK: 1, MISMATCH: 2 } as const;

/** Status codes are counted in an array this long: HTTP 100-999, HPS/1 0-255. */
export const STATUS_SLOTS = 1000;

/** The connection side a codec reports to (implemented by the engine's connection). */
export interface ResponseSink {
  /** The oldest outstanding request got its response (protocols whose responses come in request order). Status -1: none could be read. */
  completeNext(outcome: number, status: number): void;
  /** The request with this id got its response (HPS/1: any order). Unknown ids count as a mismatch. */
  completeId(requestId: number, outcome: number, status: number): void;
  /** Something arrived that answers no request (a stray frame, bytes with nothing outstanding). */
  protocolError(): void;
}

/** Per-connection response parser; reset when the connection is reopened. */
export interface ResponseCodec {
  /** Parses one received chunk. Returns false when framing is lost (the connection must be closed). */
  feed(chunk: Buffer, sink: ResponseSink): boolean;
  /** The peer closed: finish a response delimited by the close, if one is open. */
  finishOnClose(sink: ResponseSink): void;
  /** True after a response that asked for the connection to close (HTTP `Connection: close`). */
  readonly closeRequested: boolean;
  reset(): void;
}

export interface LoadProtocol {
  /** Bytes of one request. */
  readonly template: Uint8Array;
  /** Whether each request carries its own id (written by `stamp`); if not, one batch buffer is shared. */
  readonly stamped: boolean;
  /** Whether responses come in request order (else matched by id). */
  readonly ordered: boolean;
  /** Writes the request id into the request at `offset` of `target`. */
  stamp(target: Uint8Array, offset: number, requestId: number): void;
  newCodec(): ResponseCodec;
}
