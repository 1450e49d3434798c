// Counts connections (or HTTP in-flight requests) open now, in total and per client address, against two limits.

/** What `ConnectionGate.enter` decided. */
export const GateResult = { ADMITTED: 0, MAX_CONNECTIONS: 1, PER_IP: 2 } as const;

export class ConnectionGate {
  private readonly maxConnections: number;
  private readonly maxPerIp: number;
  private total = 0;
  /** Open count per address; an address leaves the map when its count returns to 0, so size <= total. */
  private readonly perIp = new Map<string, number>();

  constructor(maxConnections: number, maxConnectionsPerIp: number) {
    this.maxConnections = maxConnections;
    this.maxPerIp = maxConnectionsPerIp;
  }

  /** Admits and counts one more connection from `ip`, or says which limit refuses it (nothing is counted then). */
  enter(ip: string): number {
    if (this.total >= this.maxConnections) return GateResult.MAX_CONNECTIONS;
    const open = this.perIp.get(ip);
    if (open === undefined) {
      this.perIp.set(ip, 1);
    } else {
      if (open >= this.maxPerIp) return GateResult.PER_IP;
      this.perIp.set(ip, open + 1);
    }
    this.total++;
    return GateResult.ADMITTED;
  }

  /** Forgets one admitted connection from `ip`. A release without a matching enter is ignored. */
  leave(ip: string): void {
    const open = this.perIp.get(ip);
    if (open === undefined) return;
    if (open <= 1) this.perIp.delete(ip);
    else this.perIp.set(ip, open - 1);
    this.total--;
  }

  /** Connections (or in-flight requests) admitted and not yet released. */
  get openTotal(): number {
    return this.total;
  }

  /** Open count for one address. */
  openFrom(ip: string): number {
    return this.perIp.get(ip) ?? 0;
  }

  /** Addresses with at least one open connection. */
  get addresses(): number {
    return this.perIp.size;
  }
}
