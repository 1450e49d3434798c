// The kernel's view of a listener's connections: TCP sockets on its port, read from /proc/self/net/tcp and tcp6.
//
// Bun.serve reports no connection events, and asking for each request's peer costs a getpeername system call. The
// kernel lists every TCP socket of the network namespace with its local port, state and inode; the sockets on the
// listener's port that are not the listening socket itself are its connections. Sampled now and then, that gives
// the connections open exactly (at the moment of the sample) and, by the inodes that appeared and disappeared since
// the previous sample, a lower bound for those opened and closed (one that opens and closes between two samples is
// not seen). Another process sharing the port (SO_REUSEPORT) in the same network namespace would be counted too.
import { readFileSync } from "node:fs";

/** What one sample saw. */
export interface SocketSample {
  /** Connections on the port now (any state but LISTEN: established, or closing but still held). */
  readonly open: number;
  /** Connections seen now that the previous sample did not see. */
  readonly opened: number;
  /** Connections the previous sample saw that are gone now. */
  readonly closed: number;
}

const PROC_TABLES = ["/proc/self/net/tcp", "/proc/self/net/tcp6"] as const;
/** The `st` column of a listening socket. */
const LISTEN_STATE = "0A";
const SPACE = 32;

/** Samples the connections on one local port. */
export class PortSocketSampler {
  private readonly portHex: string;
  private readonly tables: readonly string[];
  private seen = new Set<number>();

  /** `tables`: the /proc files to read (tests may point them elsewhere). */
  constructor(port: number, tables: readonly string[] = PROC_TABLES) {
    this.portHex = port.toString(16).toUpperCase().padStart(4, "0");
    this.tables = tables;
  }

  /**
   * One sample; null when no table exists (not Linux, or /proc not mounted). Throws when a table exists but cannot
   * be read now (EMFILE: the process is out of file descriptors): a sample missing a table would count its sockets
   * closed, so none is taken and the next one counts from the last good one.
   */
  sample(): SocketSample | null {
    const now = new Set<number>();
    let readable = 0;
    for (const table of this.tables) {
      let text: string;
      try {
        text = readFileSync(table, "latin1");
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") continue; // tcp6 is absent when IPv6 is disabled
        throw error;
      }
      readable++;
      this.collect(text, now);
    }
    if (readable === 0) return null;
    let opened = 0;
    for (const inode of now) if (!this.seen.has(inode)) opened++;
    let closed = 0;
    for (const inode of this.seen) if (!now.has(inode)) closed++;
    this.seen = now;
    return { open: now.size, opened, closed };
  }

  /**
   * Adds to `into` the inode of every socket in one table whose local port is ours and that is not listening.
   * A line reads `sl: local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …`,
   * addresses as HEX:PORT.
   */
  private collect(text: string, into: Set<number>): void {
    const portHex = this.portHex;
    let lineStart = text.indexOf("\n") + 1; // past the column titles
    while (lineStart > 0 && lineStart < text.length) {
      const lineEnd = text.indexOf("\n", lineStart);
      const end = lineEnd < 0 ? text.length : lineEnd;
      const localStart = text.indexOf(": ", lineStart) + 2;
      const localEnd = text.indexOf(" ", localStart);
      if (localStart > 1 && localEnd > 0 && localEnd < end && text.startsWith(portHex, localEnd - 4)) {
        const stateStart = text.indexOf(" ", localEnd + 1) + 1; // past rem_address
        if (!text.startsWith(LISTEN_STATE, stateStart)) {
          const inode = fieldAsNumber(text, stateStart, 6, end); // tx:rx, tr:when, retrnsmt, uid, timeout, inode
          if (inode > 0) into.add(inode); // 0: a socket no process holds (TIME_WAIT)
        }
      }
      lineStart = lineEnd < 0 ? -1 : lineEnd + 1;
    }
  }
}

/** The decimal number `skip` space-separated fields after the field starting at `from` (-1 when there is none). */
function fieldAsNumber(text: string, from: number, skip: number, end: number): number {
  let at = from;
  for (let field = 0; field < skip; field++) {
    while (at < end && text.charCodeAt(at) !== SPACE) at++;
    while (at < end && text.charCodeAt(at) === SPACE) at++;
  }
  if (at >= end) return -1;
  let value = 0;
  for (; at < end; at++) {
    const digit = text.charCodeAt(at) - 48;
    if (digit < 0 || digit > 9) break;
    value = value * 10 + digit;
  }
  return value;
}

/** Shortest time between two samples. */
const MIN_SAMPLE_INTERVAL_MS = 1000;
/** Longest time between two samples, however dear one is. */
const MAX_SAMPLE_INTERVAL_MS = 60_000;
/** A sample may take at most this share of the time between samples: the interval grows with the socket tables. */
const MAX_SAMPLING_SHARE = 0.02;

/** A running sampling; `stop` ends it. */
export interface SocketSampling {
  /** Takes a sample now (the next one follows an interval later). */
  sampleNow(): void;
  stop(): void;
}

/**
 * Samples the connections on `port` about once a second into `stats` (connections open, peak, accepted and closed;
 * see Stats.connectionsSampled), spacing samples further apart when the tables are so long that sampling would take
 * more than 2 % of a core (the process's CPU time during a sample, other threads' included, counts as its cost).
 * Call from the thread that owns `stats`' shard. Does nothing where /proc is unavailable; a sample that fails (out of
 * file descriptors) is tried again a second later. `tables`: the /proc files to read (tests point them elsewhere).
 */
export function startSocketSampling(
  stats: { connectionsSampled(open: number, opened: number, closed: number): void },
  port: number,
  tables: readonly string[] = PROC_TABLES,
): SocketSampling {
  const sampler = new PortSocketSampler(port, tables);
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const run = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (stopped) return;
    // The cost is CPU time, not wall time: on a busy machine a sample waits for a core without costing more.
    const cpuBefore = process.cpuUsage();
    let sample: SocketSample | null;
    try {
      sample = sampler.sample();
    } catch {
      // The figures keep the last sample's values until a table can be read again.
      timer = setTimeout(run, MIN_SAMPLE_INTERVAL_MS);
      timer.unref();
      return;
    }
    if (sample === null) return; // no /proc: nothing to sample, ever
    stats.connectionsSampled(sample.open, sample.opened, sample.closed);
    const cpu = process.cpuUsage(cpuBefore);
    const costMs = (cpu.user + cpu.system) / 1000;
    const delayMs = Math.min(MAX_SAMPLE_INTERVAL_MS, Math.max(MIN_SAMPLE_INTERVAL_MS, costMs / MAX_SAMPLING_SHARE));
    timer = setTimeout(run, delayMs);
    timer.unref(); // statistics never keep the process alive
  };
  run();
  return {
    sampleNow: run,
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
