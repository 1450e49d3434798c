// One proxied HTTP request: pick a server, get a connection, send the request (streaming its body), turn the response
// into a Response for Bun.serve (whole when it arrived at once, else streamed with flow control), retry what may be
// retried, and answer 502/503/504 when the servers fail.
import { errorBodyBytes, errorResponse } from "../http/status.ts";
import type { UpstreamGroup } from "./group.ts";
import { ConnectFailure, type Exchange, Lost, type LostReason, UpstreamConnection } from "./http-connection.ts";
import { responseHeaders } from "./http-headers.ts";
import { type BodySink, joinHead, relayRequestBody } from "./request-body.ts";
import { type BodyOwner, ResponseBody } from "./response-body.ts";
import type { UpstreamServer } from "./server.ts";
import { Field } from "./stats.ts";
import type { Timed } from "./timeouts.ts";

/** The request as the proxy sends it (built once; a retry sends the same bytes). */
export interface OutgoingRequest {
  /** The request head for the server (see requestHead). */
  readonly head: string | Uint8Array;
  /** The body: bytes (a small body, read before the first attempt), a stream to relay, or null. */
  readonly body: Promise<Uint8Array> | ReadableStream<Uint8Array> | null;
  /** A streamed body goes out with chunked framing (its length is unknown). */
  readonly isChunked: boolean;
  /** Safe to send twice (RFC 9110 §9.2.2): a failed attempt may be retried on another server. */
  readonly isIdempotent: boolean;
  /** The response has no body whatever its headers say. */
  readonly isHead: boolean;
  /** ip_hash's key: the client address. */
  readonly clientKey: string;
  /** A streamed body longer than this is cut off (limits.max_request_bytes). */
  readonly maxBodyBytes: number;
  /**
   * The client's request, whose signal tells that the client has gone while the server is still to answer (checked
   * now and then, see CLIENT_CHECK_MS); null: not checked.
   */
  readonly client: Request | null;
}

const RETRY_AFTER_SECONDS = "1";
/**
 * How long a response head may take before hps checks, and then how often, whether the client is still there (a
 * client that left stops the exchange: its server connection is dropped, nginx's "499"). Bun.serve tells no one when a
 * client leaves before its answer; request.signal, read then, says so. Faster responses are never checked.
 */
export const CLIENT_CHECK_MS = 1000;
/** nginx's status for a request whose client left before the answer (logged, never sent). */
const CLIENT_GONE_STATUS = 499;
const NO_SERVER_HEADERS: Record<string, string> = { "Retry-After": RETRY_AFTER_SECONDS };
const EMPTY: readonly UpstreamServer[] = [];

/**
 * Told when an exchange settles, before its promise does: what it returns is what the promise resolves with. The
 * HTTP handler counts and logs there, with no closure or extra promise per request.
 */
export interface ProxyOwner {
  proxyDone(exchange: ProxyExchange, response: Response): Response;
}

/** How an exchange ended, for stats and the access log. */
export const Outcome = {
  PENDING: 0,
  /** The server's response was passed on (complete, or streaming). */
  RESPONDED: 1,
  /** hps answered 502, 503 or 504 itself. */
  ANSWERED: 2,
  /** The client went away or its body failed: nothing more is owed to it. */
  ABANDONED: 3,
} as const;

export class ProxyExchange implements Exchange, BodyOwner, BodySink, Timed {
  private readonly group: UpstreamGroup;
  private readonly request: OutgoingRequest;
  /** The request body as sent: a small one is read into bytes first, so a retry can send it again. */
  private requestBody: Uint8Array | ReadableStream<Uint8Array> | null = null;
  private resolve: (response: Response) => void = () => {};
  /** Servers tried and failed, for retries (allocated on the first retry only). */
  private exclude: readonly UpstreamServer[] = EMPTY;
  private retriesLeft: number;
  /** A pooled connection found closed by its server was replaced once already. */
  private hasReplacedStale = false;
  private connection: UpstreamConnection | null = null;

  /** The server of the current (last) attempt. */
  server: UpstreamServer | null = null;
  private statsSlot = -1;
  /** The status answered (the server's, or hps's 502/503/504); 0 before. */
  status = 0;
  outcome: number = Outcome.PENDING;
  readonly startedMs: number;
  /** Milliseconds from the start until the response head arrived (or hps answered). */
  headerMs = 0;
  /** Response body bytes passed to the client so far (all of them once the response is complete). */
  bodyBytes = 0;
  /** Who is told when the exchange settles (see ProxyOwner), and what it keeps with the exchange. */
  owner: ProxyOwner | null = null;
  ownerData: unknown = null;

  private statusText = "";
  private rawHeaders: string[] = [];
  private keepAlive = false;
  private isHeadSeen = false;
  private isComplete = false;
  /** The whole request (head and body) reached the socket. */
  private isRequestSent = false;
  private isResolved = false;
  /**
   * The response body once it needs one: a second chunk, or a stream (see responseBody()). Until then the only chunk
   * is firstChunk, and a small response that arrives whole makes no ResponseBody at all.
   */
  private body: ResponseBody | null = null;
  private firstChunk: Uint8Array | null = null;
  /** Resolves the body pump's wait for the socket to drain. */
  private wakeWriter: (() => void) | null = null;
  // Timed: the sweep that checks the client while the server is still to answer (see CLIENT_CHECK_MS).
  lastActivityMs = 0;
  timeoutMs = CLIENT_CHECK_MS;
  sweepIndex = -1;

  constructor(group: UpstreamGroup, request: OutgoingRequest, startedMs = performance.now()) {
    this.group = group;
    this.request = request;
    this.retriesLeft = group.settings.retries;
    this.startedMs = startedMs;
  }

  /** Runs the exchange; settles with the server's response or hps's own answer (never rejects). */
  run(): Promise<Response> {
    return new Promise<Response>((resolve) => {
      this.resolve = resolve;
      const body = this.request.body;
      if (!(body instanceof Promise)) {
        this.requestBody = body;
        this.attempt();
        return;
      }
      body.then(
        (bytes) => {
          this.requestBody = bytes;
          this.attempt();
        },
        () => this.abandon(400),
      );
    });
  }

  /** Picks a server not tried yet and sends the request there (or answers 503/502 when none is left). */
  private attempt(): void {
    const group = this.group;
    const server = group.pick(this.request.clientKey, this.exclude);
    if (server === null) {
      // Nothing tried: no server was available (503). Tried and failed: the last failure answers (502).
      if (this.exclude.length === 0) this.answer(503, group.noServerSlot, Field.answered503, NO_SERVER_HEADERS);
      else this.answer(502, this.statsSlot, Field.answered502, undefined);
      return;
    }
    const member = group.member(server);
    this.server = server;
    this.statsSlot = member.statsSlot;
    server.inFlight += 1;
    const pooled = member.pool.take();
    if (pooled !== null) {
      this.send(pooled);
      return;
    }
    this.connect(server);
  }

  private connect(server: UpstreamServer): void {
    const member = this.group.member(server);
    const group = this.group;
    UpstreamConnection.open(server, member.pool, group.sweep, group.settings.connect_timeout_s * 1000).then(
      (connection) => this.send(connection),
      (failure: unknown) => this.connectFailed(server, failure),
    );
  }

  private connectFailed(server: UpstreamServer, failure: unknown): void {
    const isTimeout = failure instanceof ConnectFailure && failure.code === "timeout";
    this.group.stats.add(this.statsSlot, isTimeout ? Field.connectTimeouts : Field.connectFailures, 1);
    // Nothing was sent: any request may go to another server.
    this.failedOn(server, true);
  }

  /** The attempt on `server` failed; retries on another server when allowed, else answers 502. */
  private failedOn(server: UpstreamServer, mayRetry: boolean): void {
    const group = this.group;
    group.serverFailed(server, this.statsSlot);
    group.finished(server);
    if (mayRetry && this.retriesLeft > 0) {
      this.retriesLeft -= 1;
      group.stats.add(this.statsSlot, Field.retries, 1);
      this.exclude = [...this.exclude, server];
      this.attempt();
      return;
    }
    this.answer(502, this.statsSlot, Field.answered502, undefined);
  }

  private send(connection: UpstreamConnection): void {
    this.connection = connection;
    connection.begin(this, this.group.settings.read_timeout_s);
    if (this.request.client !== null && this.sweepIndex < 0) {
      const sweep = this.group.sweep;
      this.lastActivityMs = sweep.nowMs;
      sweep.track(this);
    }
    const head = this.request.head;
    const body = this.requestBody;
    if (body === null) {
      this.isRequestSent = connection.write(head);
      return;
    }
    if (body instanceof Uint8Array) {
      this.isRequestSent = connection.write(joinHead(head, body));
      return;
    }
    const { isChunked, maxBodyBytes } = this.request;
    const relay = () => void relayRequestBody(connection, body, isChunked, maxBodyBytes, this);
    if (connection.write(head)) relay();
    else this.wakeWriter = relay;
  }

  // The request body's sink (see relayRequestBody).

  isSendingOn(connection: UpstreamConnection): boolean {
    return this.connection === connection && !this.isComplete;
  }

  bodySent(): void {
    this.isRequestSent = true;
  }

  bodyFailed(status: number): void {
    this.abandon(status);
  }

  writable(): Promise<void> {
    return new Promise((resolve) => {
      this.wakeWriter = resolve;
    });
  }

  onWritable(): void {
    const wake = this.wakeWriter;
    if (wake === null) {
      this.isRequestSent = true; // the head (and buffered body) has gone out
      return;
    }
    this.wakeWriter = null;
    wake();
  }

  // Response events.

  onHead(status: number, statusText: string, headers: string[], keepAlive: boolean, upgrade: boolean): boolean {
    if (upgrade) {
      // Upgrade was not asked for (the WebSocket path has its own relay): not a response hps can pass on. The
      // connection is dropped first, so that it reports nothing more to this exchange.
      this.connection?.abort();
      this.lost(Lost.BAD_RESPONSE);
      return true;
    }
    if (status < 200) return false; // 100 Continue, 103 Early Hints: interim, not passed on; the final one follows
    this.isHeadSeen = true;
    this.status = status;
    this.statusText = statusText;
    this.rawHeaders = headers;
    this.keepAlive = keepAlive;
    this.headerMs = performance.now() - this.startedMs;
    this.body = null;
    this.firstChunk = null;
    return this.request.isHead;
  }

  onBody(chunk: Uint8Array): void {
    this.bodyBytes += chunk.byteLength;
    const body = this.body;
    if (body !== null) body.add(chunk);
    else if (this.firstChunk === null) this.firstChunk = chunk;
    else this.responseBody().add(chunk);
  }

  onComplete(): void {
    if (!this.isHeadSeen) return; // the end of an interim (1xx) response
    this.isComplete = true;
    const connection = this.connection!;
    this.connection = null;
    connection.release(this.keepAlive && this.isRequestSent);
    this.succeeded();
    if (!this.isResolved) {
      this.respond(this.wholeResponse());
      return;
    }
    this.responseBody().end();
  }

  onParsed(): void {
    // The head is in but not the whole body: the response starts now and its body streams.
    if (this.isHeadSeen && !this.isResolved && !this.isComplete) this.respond(this.streamingResponse());
  }

  onLost(reason: LostReason, _detail: string): void {
    this.lost(reason);
  }

  private lost(reason: LostReason): void {
    const connection = this.connection;
    this.connection = null;
    const server = this.server!;
    const stats = this.group.stats;
    const wake = this.wakeWriter;
    this.wakeWriter = null;
    wake?.();
    if (this.isResolved) {
      // Mid-body: the client's response is cut short (Bun closes its connection), the server counts as failed.
      this.isComplete = true;
      stats.add(this.statsSlot, reason === Lost.TIMEOUT ? Field.readTimeouts : Field.lost, 1);
      this.group.serverFailed(server, this.statsSlot);
      this.group.finished(server);
      this.body?.fail(`upstream ${server.address} failed mid-response`);
      return;
    }
    const canReplay = this.request.isIdempotent && !(this.requestBody instanceof ReadableStream);
    if (
      reason === Lost.CLOSED &&
      connection !== null &&
      connection.responses > 0 &&
      connection.receivedBytes === 0 &&
      canReplay &&
      !this.hasReplacedStale
    ) {
      // A pooled connection the server had closed while idle: the same server, a fresh connection, no failure.
      this.hasReplacedStale = true;
      stats.add(this.statsSlot, Field.staleRetries, 1);
      this.connect(server);
      return;
    }
    if (reason === Lost.TIMEOUT) {
      stats.add(this.statsSlot, Field.readTimeouts, 1);
      this.group.serverFailed(server, this.statsSlot);
      this.group.finished(server);
      this.answer(504, this.statsSlot, Field.answered504, undefined);
      return;
    }
    stats.add(this.statsSlot, reason === Lost.BAD_RESPONSE ? Field.badResponses : Field.lost, 1);
    this.isHeadSeen = false;
    this.body = null;
    this.firstChunk = null;
    this.bodyBytes = 0;
    this.failedOn(server, canReplay && reason === Lost.CLOSED);
  }

  /** The response came back: counted, and the server's failures forgotten. */
  private succeeded(): void {
    const server = this.server!;
    const nowMs = performance.now();
    const micros = Math.round((nowMs - this.startedMs) * 1000);
    server.health.succeeded(nowMs);
    server.responded(micros);
    this.group.stats.response(this.statsSlot, this.status, micros);
    this.group.finished(server);
  }

  private wholeResponse(): Response {
    const headers = responseHeaders(this.rawHeaders, this.request.isHead || !hasBody(this.status));
    const body = this.body === null ? this.firstChunk : this.body.takeWhole();
    this.firstChunk = null;
    return respondWith(body, this.status, this.statusText, headers);
  }

  private streamingResponse(): Response {
    const headers = responseHeaders(this.rawHeaders, true);
    return respondWith(this.responseBody().stream(), this.status, this.statusText, headers);
  }

  /** The response body as a ResponseBody, made now if the only chunk so far was kept aside. */
  private responseBody(): ResponseBody {
    let body = this.body;
    if (body === null) {
      body = new ResponseBody(this);
      this.body = body;
      const first = this.firstChunk;
      this.firstChunk = null;
      if (first !== null) body.add(first);
    }
    return body;
  }

  // The streamed body's owner (see ResponseBody).

  pauseServer(isPaused: boolean): void {
    this.connection?.pauseReading(isPaused, this.group.settings.read_timeout_s);
  }

  /** The client went away mid-response: the connection cannot be reused (the rest of the body is unread). */
  clientGone(): void {
    if (this.isComplete) return;
    const connection = this.connection;
    this.connection = null;
    this.isComplete = true;
    connection?.abort();
    this.outcome = Outcome.ABANDONED;
    this.group.finished(this.server!);
  }

  /** The sweep: no response head for CLIENT_CHECK_MS (again). A client that has gone stops the exchange. */
  onIdleTimeout(): void {
    if (this.isResolved) return;
    if (!this.request.client!.signal.aborted) {
      this.lastActivityMs = this.group.sweep.nowMs;
      this.group.sweep.track(this);
      return;
    }
    // Nobody waits for the answer: the connection is dropped (a response may still be on its way), the server is
    // free for others, and the request is logged as 499. Not a failure of the server.
    const connection = this.connection;
    this.connection = null;
    connection?.abort();
    if (this.server !== null && !this.isComplete) this.group.finished(this.server);
    this.isComplete = true;
    this.status = CLIENT_GONE_STATUS;
    this.headerMs = performance.now() - this.startedMs;
    this.isResolved = true;
    this.outcome = Outcome.ABANDONED;
    this.bodyBytes = 0;
    this.settle(errorResponse(CLIENT_GONE_STATUS, CLOSE));
  }

  private respond(response: Response): void {
    this.isResolved = true;
    this.outcome = Outcome.RESPONDED;
    this.settle(response);
  }

  private settle(response: Response): void {
    this.group.sweep.untrack(this);
    const owner = this.owner;
    this.resolve(owner === null ? response : owner.proxyDone(this, response));
  }

  /** hps answers itself (no server available, all failed, timed out). */
  private answer(status: number, slot: number, field: number, headers: Record<string, string> | undefined): void {
    this.status = status;
    this.headerMs = performance.now() - this.startedMs;
    this.group.stats.add(slot, field, 1);
    this.isResolved = true;
    this.isComplete = true;
    this.outcome = Outcome.ANSWERED;
    this.bodyBytes = this.request.isHead ? 0 : errorBodyBytes(status);
    this.settle(errorResponse(status, headers));
  }

  /** The client's side failed (its body broke off, or was too long): the attempt stops; the connection is dropped. */
  private abandon(status: number): void {
    const connection = this.connection;
    this.connection = null;
    connection?.abort();
    if (this.server !== null && !this.isComplete) this.group.finished(this.server);
    this.isComplete = true;
    if (this.isResolved) {
      this.body?.fail("request body failed");
      return;
    }
    this.status = status;
    this.isResolved = true;
    this.outcome = Outcome.ABANDONED;
    this.bodyBytes = this.request.isHead ? 0 : errorBodyBytes(status);
    this.settle(errorResponse(status, CLOSE));
  }
}

const CLOSE: Record<string, string> = { Connection: "close" };

/**
 * ResponseInit objects filled per response and read at once by the Response constructor (which copies what it
 * needs): one with the reason phrase, one without it for the usual "200 OK" (Bun's default phrase).
 */
const PLAIN_INIT: { readonly status: 200; headers: Headers | null } = { status: 200, headers: null };
const PHRASE_INIT: { status: number; statusText: string; headers: Headers | null } = {
  status: 200,
  statusText: "",
  headers: null,
};

/** The client's Response: status, the server's reason phrase (when it is not the usual "OK"), headers and body. */
function respondWith(
  body: Uint8Array | ReadableStream<Uint8Array> | null,
  status: number,
  statusText: string,
  headers: Headers,
): Response {
  if (status === 200 && statusText === "OK") {
    PLAIN_INIT.headers = headers;
    try {
      return new Response(body, PLAIN_INIT as ResponseInit);
    } finally {
      PLAIN_INIT.headers = null; // the shared object must not keep the headers alive
    }
  }
  PHRASE_INIT.status = status;
  PHRASE_INIT.statusText = statusText;
  PHRASE_INIT.headers = headers;
  try {
    return new Response(body, PHRASE_INIT as ResponseInit);
  } finally {
    PHRASE_INIT.headers = null;
  }
}

/** Whether a response with this status may carry a body (RFC 9110 §6.4.1). */
function hasBody(status: number): boolean {
  return status !== 204 && status !== 304 && status >= 200;
}
