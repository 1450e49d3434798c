// A TLS listener whose certificates can be replaced: a new listener joins the port, the old one drains and closes.
//
// Bun cannot change the certificate of a running listener (docs/upstream/serve-reload-tls.md). So every TLS
// listener binds with SO_REUSEPORT, and a rotation starts a second listener on the same port with the new options,
// hands it the same handlers, then retires the old one: it stops accepting, its idle connections close, and its
// busy ones finish their work with the certificate they were opened with. Where the port is ours alone (one I/O
// thread, server.reuse_port not asked for) new connections are steered to the new listener first and the old one is
// closed only once its accept queue is empty, so the swap resets nothing (src/tls/reuseport-steering.ts).
import type { Server, TLSOptions } from "bun";
import { acceptQueueLength, listenerDescriptor, steerNewConnections, stopSteering } from "./reuseport-steering.ts";

/** How long a retiring listener keeps receiving what the kernel already gave it: at least, and at most. */
const SETTLE_MIN_MS = 250;
const SETTLE_MAX_MS = 5000;
const SETTLE_POLL_MS = 10;

/** One listener of a rotation: what it must offer, whatever Bun API made it. */
export interface RotatedListener {
  /** Stops accepting; open connections finish (resolves when they have). */
  stopAccepting(): Promise<void>;
  /** Closes everything now. */
  close(): Promise<void>;
}

/** The steps a rotation takes, with their facts, for logs and tests. */
export interface RotationReport {
  /** New connections were sent to the new listener while the old one drained its queue. */
  readonly steered: boolean;
  /** Connections left in the old listener's accept queue when it closed (0 when steered; -1 when unknown). */
  readonly leftInQueue: number;
}

/**
 * Replaces listeners one after another on one port. `T` is the listener (a Bun Server or socket listener); `open`
 * makes one with the given TLS options on the rotation's port, `wrap` gives its RotatedListener view.
 */
export class Rotation<T> {
  private current: T;
  private currentFd: number | null;
  /** Retired listeners whose connections are still open. */
  private readonly retiring = new Set<T>();
  /** The rotation in progress; the next waits for it (steering relies on one retiring listener at a time). */
  private pending: Promise<unknown> = Promise.resolve();
  private stopped = false;

  private constructor(
    first: T,
    firstFd: number | null,
    readonly port: number,
    private readonly open: (tls: TLSOptions[], port: number) => T,
    private readonly wrap: (listener: T) => RotatedListener,
    private readonly descriptorOf: (listener: T, port: number, known: ReadonlySet<number>) => Promise<number | null>,
    private readonly steer: boolean,
  ) {
    this.current = first;
    this.currentFd = firstFd;
  }

  /**
   * Opens the first listener. `steer`: this process is the only one on the port and one listener of it at a time is
   * ours, so new connections may be steered during a rotation. `portOf` reads the bound port (config port 0).
   */
  static async start<T>(options: {
    tls: TLSOptions[];
    port: number;
    open: (tls: TLSOptions[], port: number) => T;
    portOf: (listener: T) => number;
    wrap: (listener: T) => RotatedListener;
    /** The listener's socket: Bun.listen exposes it; for Bun.serve it is the port's listening socket not `known`. */
    descriptorOf?: (listener: T, port: number, known: ReadonlySet<number>) => Promise<number | null>;
    steer: boolean;
  }): Promise<Rotation<T>> {
    const descriptorOf = options.descriptorOf ?? ((_listener, port, known) => listenerDescriptor(port, known));
    const first = options.open(options.tls, options.port);
    const port = options.portOf(first);
    const fd = options.steer ? await descriptorOf(first, port, new Set()) : null;
    return new Rotation(first, fd, port, options.open, options.wrap, descriptorOf, options.steer);
  }

  /** The listener taking new connections. */
  get active(): T {
    return this.current;
  }

  /** Every listener with connections: the active one first, then those retiring. */
  all(): T[] {
    return [this.current, ...this.retiring];
  }

  /**
   * Opens a listener with `tls` and retires the current one. Resolves once the old one has stopped accepting (its
   * open connections may still be finishing); throws, keeping the current listener, when the new one cannot open.
   */
  rotate(tls: TLSOptions[]): Promise<RotationReport> {
    const run = this.pending.then(() => this.rotateNow(tls));
    this.pending = run.catch(() => {});
    return run;
  }

  private async rotateNow(tls: TLSOptions[]): Promise<RotationReport> {
    if (this.stopped) throw new Error("the listener is stopping");
    const old = this.current;
    const oldFd = this.currentFd;
    const fresh = this.open(tls, this.port);
    const freshFd = this.steer && oldFd !== null ? await this.descriptorOf(fresh, this.port, new Set([oldFd])) : null;
    this.current = fresh;
    this.currentFd = freshFd;
    this.retiring.add(old);
    // The old listener joined the port's group first and is its only other member: index 1 is the new one.
    const steered = oldFd !== null && freshFd !== null && (await steerNewConnections(freshFd, 1));
    let leftInQueue = -1;
    if (steered) {
      const startedMs = performance.now();
      for (;;) {
        await Bun.sleep(SETTLE_POLL_MS);
        const elapsedMs = performance.now() - startedMs;
        leftInQueue = await acceptQueueLength(oldFd);
        if ((leftInQueue === 0 && elapsedMs >= SETTLE_MIN_MS) || elapsedMs >= SETTLE_MAX_MS) break;
      }
    }
    const draining = this.wrap(old).stopAccepting();
    if (steered) await stopSteering(freshFd!);
    void draining.finally(() => this.retiring.delete(old));
    return { steered, leftInQueue };
  }

  /** The first step of a graceful stop: no listener accepts from now on; open connections carry on. */
  stopAccepting(): void {
    this.stopped = true;
    for (const listener of this.all()) void this.wrap(listener).stopAccepting();
  }

  /** Closes every listener and connection now. */
  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.all().map((listener) => this.wrap(listener).close()));
  }
}

/** The RotatedListener view of a Bun.serve server. */
export function servedListener(server: Server<undefined>): RotatedListener {
  return {
    stopAccepting: () => server.stop(false),
    close: () => server.stop(true),
  };
}

/**
 * Throws Bun's EADDRINUSE when another socket holds `hostname:port`. A TLS listener binds with SO_REUSEPORT (so it can
 * rotate), which would let it share the port silently with another process that also set it: bind once without
 * the option first, so a second server on the same port is still refused at start.
 */
export function requirePortFree(hostname: string, port: number): void {
  if (port === 0) return;
  const probe = Bun.listen({ hostname, port, socket: { data() {} } });
  probe.stop(true);
}
