// HTTP connections as the server can see them: a peer (address, port), its request count and its admission slot.
//
// Bun.serve has no connection events. server.requestIP(req) gives the peer address and port, and while a
// connection is open no other connection can have the same pair, so (address, port) names it. An entry is
// forgotten when its connection is told to close (Connection: close, or http.max_keepalive_requests reached),
// when the request itself asked to close, or when it has been idle longer than Bun's idleTimeout (Bun has closed
// it by then; a later request from the same pair is a new connection). Entries of connections that the client
// closed early cannot be seen going: the periodic sweep forgets them once idle past the timeout. Forgetting an
// entry that was admitted calls `onForget(clientAddress)` (the admission slot is released).
// A mistake can only close a connection early or keep a slot counted too long, never serve past a limit.

/** One open connection as far as the server knows. */
export interface ConnectionState {
  readonly address: string;
  readonly port: number;
  /** The client address it was admitted under (X-Forwarded-For from a trusted proxy, else `address`). */
  readonly clientAddress: string;
  /** Whether admission counted it (its slot is released when the entry is forgotten). */
  readonly admitted: boolean;
  requests: number;
  lastSeenMs: number;
  /** Another connection whose peer has the same port but another address. */
  next: ConnectionState | null;
}

export class KeepAliveCounter {
  private readonly byPort = new Map<number, ConnectionState>();
  private readonly maxRequests: number;
  private readonly forgetAfterMs: number;
  private readonly onForget: ((clientAddress: string) => void) | null;
  private size = 0;

  /**
   * `maxRequests`: requests per connection before it is closed; 0 = no limit (only the admission slot is tracked).
   * `forgetAfterMs`: idle time after which the connection is surely closed (Bun's idleTimeout).
   * `onForget`: called with the client address of every admitted entry that is forgotten.
   */
  constructor(maxRequests: number, forgetAfterMs: number, onForget: ((clientAddress: string) => void) | null = null) {
    this.maxRequests = maxRequests;
    this.forgetAfterMs = forgetAfterMs;
    this.onForget = onForget;
  }

  /**
   * The open connection from (address, port), or null when this request starts a new one: none is known, or the
   * known one has been idle past forgetAfterMs (it is forgotten first; Bun has closed it).
   */
  find(address: string, port: number, nowMs: number): ConnectionState | null {
    let state: ConnectionState | null = this.byPort.get(port) ?? null;
    while (state !== null && state.address !== address) state = state.next;
    if (state === null) return null;
    if (nowMs - state.lastSeenMs > this.forgetAfterMs) {
      this.forget(state);
      return null;
    }
    return state;
  }

  /** Tracks a new connection (after find returned null and admission, if any, said yes). */
  open(address: string, port: number, clientAddress: string, admitted: boolean, nowMs: number): ConnectionState {
    const first = this.byPort.get(port) ?? null;
    const created: ConnectionState = { address, port, clientAddress, admitted, requests: 0, lastSeenMs: nowMs, next: first };
    this.byPort.set(port, created);
    this.size++;
    return created;
  }

  /** Counts a request on `state`; true when it is the last one allowed (send Connection: close, then forget it). */
  countRequest(state: ConnectionState, nowMs: number): boolean {
    state.lastSeenMs = nowMs;
    return ++state.requests === this.maxRequests;
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

  /** Forgets connections idle for longer than forgetAfterMs. Bounded by the number of entries. */
  sweep(nowMs: number): void {
    for (const head of this.byPort.values()) {
      let state: ConnectionState | null = head;
      while (state !== null) {
        const next: ConnectionState | null = state.next;
        if (nowMs - state.lastSeenMs > this.forgetAfterMs) this.forget(state);
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
