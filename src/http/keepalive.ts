// Requests per keep-alive connection, for http.max_keepalive_requests; a connection is its peer (address, port).
//
// Bun.serve has no connection events. server.requestIP(req) gives the peer address and port, and while a
// connection is open no other connection can have the same pair, so (address, port) names it. An entry is
// forgotten when its connection is told to close, or when it has been idle longer than Bun's idleTimeout (Bun
// has closed it by then, so a later connection from the same pair starts again at 1). Entries of connections
// that the client closed early are swept on a timer. A mistake can only close a connection early, never late.

interface ConnectionState {
  address: string;
  requests: number;
  lastSeenMs: number;
  /** Another connection whose peer has the same port but another address. */
  next: ConnectionState | null;
}

export class KeepAliveCounter {
  private readonly byPort = new Map<number, ConnectionState>();
  private readonly maxRequests: number;
  private readonly forgetAfterMs: number;
  private size = 0;

  /** `forgetAfterMs`: idle time after which the connection is surely closed (Bun's idleTimeout). */
  constructor(maxRequests: number, forgetAfterMs: number) {
    this.maxRequests = maxRequests;
    this.forgetAfterMs = forgetAfterMs;
  }

  /** Counts a request on the connection from (address, port); true when it is the last one allowed (send Connection: close). */
  countRequest(address: string, port: number, nowMs: number): boolean {
    const first = this.byPort.get(port);
    let state: ConnectionState | null | undefined = first;
    while (state !== undefined && state !== null && state.address !== address) state = state.next;
    if (state === undefined || state === null) {
      if (this.maxRequests === 1) return true;
      const created: ConnectionState = { address, requests: 1, lastSeenMs: nowMs, next: first ?? null };
      this.byPort.set(port, created);
      this.size++;
      return false;
    }
    if (nowMs - state.lastSeenMs > this.forgetAfterMs) state.requests = 0; // the old connection timed out; this is a new one
    state.lastSeenMs = nowMs;
    state.requests++;
    if (state.requests < this.maxRequests) return false;
    this.remove(port, state);
    return true;
  }

  /** Forgets connections idle for longer than forgetAfterMs. Bounded by the number of entries. */
  sweep(nowMs: number): void {
    for (const [port, head] of this.byPort) {
      let state: ConnectionState | null = head;
      while (state !== null) {
        const next: ConnectionState | null = state.next;
        if (nowMs - state.lastSeenMs > this.forgetAfterMs) this.remove(port, state);
        state = next;
      }
    }
  }

  /** Connections tracked now. */
  get tracked(): number {
    return this.size;
  }

  private remove(port: number, target: ConnectionState): void {
    const head = this.byPort.get(port);
    if (head === undefined) return;
    if (head === target) {
      if (target.next === null) this.byPort.delete(port);
      else this.byPort.set(port, target.next);
      this.size--;
      return;
    }
    let previous = head;
    while (previous.next !== null && previous.next !== target) previous = previous.next;
    if (previous.next === target) {
      previous.next = target.next;
      this.size--;
    }
  }
}
