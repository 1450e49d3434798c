// A TLS listener whose certificates can be replaced: a new listener joins the port, the old one drains and closes.
//
// Bun cannot change the certificate of a running listener (docs/upstream/serve-reload-tls.md). So every TLS
// listener binds with SO_REUSEPORT, and a rotation starts a second listener on the same port with the new options,
// hands it the same handlers, then retires the old one: it stops accepting, its idle connections close, and its
// busy ones finish their work with the certificate they were opened with. Where the port is ours alone (one I/O
// thread, server.reuse_port not asked for) new connections are steered to the new listener first and the old one is
// closed only once its accept queue is empty, so the swap resets nothing (src/tls/reuseport-steering.ts).
import type { Server, TLSOptions } from "bun";
import type { Config } from "../config/schema.ts";
import {
  acceptQueueLength,
  listenerDescriptor,
  loadSteering,
  nextDescriptor,
  steerNewConnections,
  stopSteering,
} from "./reuseport-steering.ts";

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

/** What a rotation did, for logs and tests. */
export interface RotationReport {
  /** New connections were sent to the new listener while the old one drained its queue. */
  readonly steered: boolean;
  /** Connections left in the old listener's accept queue when it closed (0 when steered; -1 when unknown). */
  readonly leftInQueue: number;
}

/** How a rotation opens and views its listeners. */
export interface RotationOptions<T> {
  tls: TLSOptions[];
  port: number;
  /** Opens a listener with these options on this port (with SO_REUSEPORT). */
  open: (tls: TLSOptions[], port: number) => T;
  portOf: (listener: T) => number;
  wrap: (listener: T) => RotatedListener;
  /** The listener's socket: Bun.listen exposes it; for Bun.serve it is the port's listening socket not `known`. */
  descriptorOf?: (listener: T, port: number, known: ReadonlySet<number>) => number | null;
  /**
   * This process is the only one on the port and one listener of it at a time is ours (one I/O thread,
   * server.reuse_port not asked for), so new connections may be steered during a rotation.
   */
  steer: boolean;
}

/**
 * Replaces listeners one after another on one port. `T` is the listener (a Bun Server or socket listener).
 * A rotation opens the new listener (and steers new connections to it) synchronously, so new handshakes get the new
 * certificate as soon as rotate() returns, unless the previous rotation is still retiring its listener: then this
 * one waits for it (steering relies on one retiring listener at a time).
 */
export class Rotation<T> {
  private current: T;
  private currentFd: number | null;
  /** Retired listeners whose connections are still open. */
  private readonly retiring = new Set<T>();
  /** The retirement in progress (the old listener draining its accept queue), or null. */
  private retirement: Promise<unknown> | null = null;
  private stopped = false;
  readonly port: number;
  private readonly options: RotationOptions<T>;

  private constructor(options: RotationOptions<T>, first: T, firstFd: number | null, port: number) {
    this.options = options;
    this.current = first;
    this.currentFd = firstFd;
    this.port = port;
  }

  /** Opens the first listener (config port 0 picks one; every later listener takes the same). */
  static async start<T>(options: RotationOptions<T>): Promise<Rotation<T>> {
    const steer = options.steer && (await loadSteering());
    const settled: RotationOptions<T> = { ...options, steer };
    const likelyFd = steer ? nextDescriptor() : null;
    const first = options.open(options.tls, options.port);
    const port = options.portOf(first);
    return new Rotation(settled, first, steer ? descriptorOf(settled, first, port, new Set(), likelyFd) : null, port);
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
   * Opens a listener with `tls` (at once, unless a retirement is in progress) and retires the current one. Resolves
   * once the old one has stopped accepting (its open connections may still be finishing); throws, keeping the
   * current listener, when the new one cannot open.
   */
  rotate(tls: TLSOptions[]): Promise<RotationReport> {
    if (this.stopped) return Promise.reject(new Error("the listener is stopping"));
    if (this.retirement === null) return this.track(this.rotateNow(tls));
    return this.track(this.retirement.then(() => this.rotateNow(tls)));
  }

  private track(run: Promise<RotationReport>): Promise<RotationReport> {
    const tracked = run.catch(() => {});
    this.retirement = tracked;
    void tracked.then(() => {
      if (this.retirement === tracked) this.retirement = null;
    });
    return run;
  }

  /** Opens and steers synchronously (before the first await), then retires the old listener. */
  private rotateNow(tls: TLSOptions[]): Promise<RotationReport> {
    if (this.stopped) return Promise.reject(new Error("the listener is stopping"));
    const old = this.current;
    const oldFd = this.currentFd;
    const likelyFd = oldFd !== null ? nextDescriptor() : null;
    let fresh: T;
    try {
      fresh = this.options.open(tls, this.port);
    } catch (error) {
      return Promise.reject(error);
    }
    const freshFd = oldFd !== null ? descriptorOf(this.options, fresh, this.port, new Set([oldFd]), likelyFd) : null;
    this.current = fresh;
    this.currentFd = freshFd;
    this.retiring.add(old);
    // The old listener joined the port's group first and is its only other member: index 1 is the new one.
    const steered = oldFd !== null && freshFd !== null && steerNewConnections(freshFd, 1);
    return this.retire(old, oldFd, steered ? freshFd : null);
  }

  /**
   * Lets the old listener take what the kernel queued for it (when steered), then stops it accepting. A stop meanwhile
   * ends this at once: stopAccepting() and close() have stopped every listener, and their descriptors, closed or
   * closing, may soon be another socket's.
   */
  private async retire(old: T, oldFd: number | null, steeredFd: number | null): Promise<RotationReport> {
    let leftInQueue = -1;
    if (steeredFd !== null && oldFd !== null) {
      const startedMs = performance.now();
      for (;;) {
        await Bun.sleep(SETTLE_POLL_MS);
        if (this.stopped) return { steered: true, leftInQueue };
        const elapsedMs = performance.now() - startedMs;
        leftInQueue = acceptQueueLength(oldFd);
        if ((leftInQueue === 0 && elapsedMs >= SETTLE_MIN_MS) || elapsedMs >= SETTLE_MAX_MS) break;
      }
    }
    if (this.stopped) return { steered: steeredFd !== null, leftInQueue };
    const draining = this.options.wrap(old).stopAccepting();
    if (steeredFd !== null) stopSteering(steeredFd);
    void draining.finally(() => this.retiring.delete(old));
    return { steered: steeredFd !== null, leftInQueue };
  }

  /** The first step of a graceful stop: no listener accepts from now on; open connections carry on. */
  stopAccepting(): void {
    this.stopped = true;
    for (const listener of this.all()) void this.options.wrap(listener).stopAccepting();
  }

  /** Closes every listener and connection now. */
  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.all().map((listener) => this.options.wrap(listener).close()));
  }
}

function descriptorOf<T>(
  options: RotationOptions<T>,
  listener: T,
  port: number,
  known: ReadonlySet<number>,
  likelyFd: number | null,
): number | null {
  return options.descriptorOf === undefined
    ? listenerDescriptor(port, known, likelyFd)
    : options.descriptorOf(listener, port, known);
}

/** The RotatedListener view of a Bun.listen listener (its sockets are closed by the server that owns them). */
export function listenedListener(listener: { stop(closeActiveConnections?: boolean): void }): RotatedListener {
  return {
    stopAccepting: () => {
      listener.stop(false);
      return Promise.resolve();
    },
    close: () => {
      listener.stop(true);
      return Promise.resolve();
    },
  };
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

/**
 * Whether rotations may steer new connections: only when the port is the listener's alone (no other I/O thread or
 * process shares it), since the steering program picks a socket by its place in the port's group.
 */
export function steersRotations(config: Config): boolean {
  return !config.server.reuse_port && config.server.io_threads === 1;
}
