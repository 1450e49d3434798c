// HTTP connections as the server can see them: a peer (address, port), its request count and its admission slot.
//
// Bun.serve has no connection events. server.requestIP(req) gives the peer address and port, and while a
// connection is open no other connection can have the same pair, so (address, port) names it. An entry is
// forgotten when its connection is told to close (Connection: close, or http.max_keepalive_requests reached),
// when the request itself asked to close, when a long response's request signal aborts (the client went away, or
// Bun cut the connection), or when it has been idle longer than Bun's idleTimeout (Bun has closed it by then; a
// later request from the same pair is a new connection). Forgetting an entry that was admitted calls
// `onForget(clientAddress)` (the admission slot is released).
//
// Idle means: no request and no response still being sent. Bun keeps a connection open while it sends a long
// response, whatever idleTimeout says, and tells nothing when it is done. So a response of `bodyBytes` keeps its
// connection busy until an estimated end (sent at slowestClientBytesPerSecond), and the periodic sweep ends every
// such estimate early when the server has no response in progress at all (server.pendingRequests === 0: they are
// all sent). A new request on the connection also shows the previous response is done (HTTP/1.1 answers in order).
// What stays imprecise: a connection the client closes silently stays counted until idle past the timeout (and
// after a long response, until the first sweep that sees no response in progress, or the estimate); a response
// slower than slowestClientBytesPerSecond on a server that is never without a response in progress can lose its
// slot before it ends, and the connection's next request is then admitted (or refused) as a new connection.
// A mistake in the other direction (a slot counted too long) can only refuse a new connection early.

/** One open connection as far as the server knows. */
export class ConnectionState {
  readonly address: string;
  readonly port: number;
  /** The client address it was admitted under (X-Forwarded-For from a trusted proxy, else `address`). */
  readonly clientAddress: string;
  /** Whether admission counted it (its slot is released when the entry is forgotten). */
  readonly admitted: boolean;
  requests = 0;
  /** Start of its latest request. */
  lastSeenMs: number;
  /** Estimated end of the response being sent (0 = none); the connection is not idle before it. */
  busyUntilMs = 0;
  /** Another connection whose peer has the same port but another address. */
  next: ConnectionState | null;
  private readonly owner: KeepAliveCounter;

  constructor(
    owner: KeepAliveCounter,
    address: string,
    port: number,
    clientAddress: string,
    admitted: boolean,
    nowMs: number,
    next: ConnectionState | null,
  ) {
    this.owner = owner;
    this.address = address;
    this.port = port;
    this.clientAddress = clientAddress;
    this.admitted = admitted;
    this.lastSeenMs = nowMs;
    this.next = next;
  }

  /** Start of its idle time: the latest request, or the estimated end of the response being sent. */
  idleSinceMs(): number {
    return Math.max(this.busyUntilMs, this.lastSeenMs);
  }

  /** The abort event of a long response's request signal (an EventListener object: no closure per response). */
  handleEvent(): void {
    this.owner.forget(this);
  }
}

/** addEventListener options for the abort watch: the listener goes with the first event. */
const ONCE: AddEventListenerOptions = { once: true };

export class KeepAliveCounter {
  private readonly byPort = new Map<number, ConnectionState>();
  private readonly maxRequests: number;
  private readonly forgetAfterMs: number;
  private readonly onForget: ((clientAddress: string) => void) | null;
  private readonly msPerBodyByte: number;
  private readonly watchedBodyBytes: number;
  private size = 0;

  /**
   * `maxRequests`: requests per connection before it is closed; 0 = no limit (only the admission slot is tracked).
   * `forgetAfterMs`: idle time after which the connection is surely closed (Bun's idleTimeout).
   * `onForget`: called with the client address of every admitted entry that is forgotten.
   * `timing.slowestClientBytesPerSecond`: rate at which a response's end is estimated (see the file's header).
   * `timing.watchedBodyBytes`: responses at least this long have their request signal watched for an abort.
   */
  constructor(
    maxRequests: number,
    forgetAfterMs: number,
    onForget: ((clientAddress: string) => void) | null = null,
    timing: { readonly slowestClientBytesPerSecond: number; readonly watchedBodyBytes: number } = {
      slowestClientBytesPerSecond: Number.POSITIVE_INFINITY,
      watchedBodyBytes: Number.POSITIVE_INFINITY,
    },
  ) {
    this.maxRequests = maxRequests;
    this.forgetAfterMs = forgetAfterMs;
    this.onForget = onForget;
    this.msPerBodyByte = 1000 / timing.slowestClientBytesPerSecond;
    this.watchedBodyBytes = timing.watchedBodyBytes;
  }

  /**
   * The open connection from (address, port), or null when this request starts a new one: none is known, or the
   * known one has been idle past forgetAfterMs (it is forgotten first; Bun has closed it).
   */
  find(address: string, port: number, nowMs: number): ConnectionState | null {
    let state: ConnectionState | null = this.byPort.get(port) ?? null;
    while (state !== null && state.address !== address) state = state.next;
    if (state === null) return null;
    if (nowMs - state.idleSinceMs() > this.forgetAfterMs) {
      this.forget(state);
      return null;
    }
    return state;
  }

  /** Tracks a new connection (after find returned null and admission, if any, said yes). */
  open(address: string, port: number, clientAddress: string, admitted: boolean, nowMs: number): ConnectionState {
    const first = this.byPort.get(port) ?? null;
    const created = new ConnectionState(this, address, port, clientAddress, admitted, nowMs, first);
    this.byPort.set(port, created);
    this.size++;
    return created;
  }

  /** Counts a request on `state`; true when it is the last one allowed (send Connection: close, then forget it). */
  countRequest(state: ConnectionState, nowMs: number): boolean {
    state.lastSeenMs = nowMs;
    state.busyUntilMs = 0; // a new request: the previous response has been sent
    return ++state.requests === this.maxRequests;
  }

  /**
   * A response of `bodyBytes` starts on `state` (kept open): the connection is busy until its estimated end, and
   * a long one's `request.signal` is watched, so the connection is forgotten at once if it goes away mid-response.
   */
  responding(state: ConnectionState, bodyBytes: number, nowMs: number, request: Request): void {
    if (bodyBytes === 0) return;
    state.busyUntilMs = nowMs + bodyBytes * this.msPerBodyByte;
    if (bodyBytes >= this.watchedBodyBytes) request.signal.addEventListener("abort", state, ONCE);
  }

  /** Counts a request on the connection from (address, port), tracking it when new; true when it is the last one. */
  countPeerRequest(address: string, port: number, nowMs: number): boolean {
    const state = this.find(address, port, nowMs) ?? this.open(address, port, address, false, nowMs);
    if (!this.countRequest(state, nowMs)) return false;
    this.forget(state);
    return true;
  }

  /** Forgets a connection (it is being closed); releases its admission slot. Forgetting twice is harmless. */
  forget(target: ConnectionState): void {
    const head = this.byPort.get(target.port);
    if (head === undefined) return;
    if (head === target) {
      if (target.next === null) this.byPort.delete(target.port);
      else this.byPort.set(target.port, target.next);
    } else {
      let previous = head;
      while (previous.next !== null && previous.next !== target) previous = previous.next;
      if (previous.next !== target) return;
      previous.next = target.next;
    }
    this.size--;
    if (target.admitted && this.onForget !== null) this.onForget(target.clientAddress);
  }

  /**
   * Forgets connections idle for longer than forgetAfterMs. `responsesInProgress`: responses the server is still
   * sending (server.pendingRequests, read outside any request); when 0, every busy connection's response has
   * ended, and its idle time starts now. Bounded by the number of entries.
   */
  sweep(nowMs: number, responsesInProgress: number): void {
    const allSent = responsesInProgress === 0;
    for (const head of this.byPort.values()) {
      let state: ConnectionState | null = head;
      while (state !== null) {
        const next: ConnectionState | null = state.next;
        if (allSent && state.busyUntilMs > nowMs) state.busyUntilMs = nowMs;
        if (nowMs - state.idleSinceMs() > this.forgetAfterMs) this.forget(state);
        state = next;
      }
    }
  }

  /** Forgets every connection (the listener stops), releasing admitted slots. */
  clear(): void {
    for (const head of [...this.byPort.values()]) {
      let state: ConnectionState | null = head;
      while (state !== null) {
        const next: ConnectionState | null = state.next;
        this.forget(state);
        state = next;
      }
    }
  }

  /** Connections tracked now. */
  get tracked(): number {
    return this.size;
  }
}
