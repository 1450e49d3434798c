// Shared test helpers: a loopback configuration on port 0 with logs and the admin listener off.
import { configSchema, type Config, type ConfigOverrides } from "../../src/config/schema.ts";
import type { Socket } from "bun";
import type { GaugeRegistry, ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import { Stats } from "../../src/stats/stats.ts";
import { FrameDecoder } from "../../src/tcp/frame.ts";

/** A validated Config for tests: 127.0.0.1, port 0, no admin listener, no access log, no periodic report. */
export function testConfig(overrides: ConfigOverrides = {}): Config {
  const base: ConfigOverrides = {
    server: { bind: "127.0.0.1", port: 0, shutdown_timeout_s: 5 },
    admin: { enabled: false, port: 0, bind: "127.0.0.1" },
    log: { level: "error", access_log: false },
    stats: { interval_s: 0 },
    pool: { threads: 2 },
  };
  const merged: Record<string, Record<string, unknown>> = {};
  for (const source of [base, overrides]) {
    for (const [table, values] of Object.entries(source)) {
      // Arrays of tables ([[upstreams]]) replace; tables merge key by key.
      merged[table] =
        Array.isArray(values) || Array.isArray(merged[table])
          ? (values as unknown as Record<string, unknown>)
          : { ...merged[table], ...(values as Record<string, unknown>) };
    }
  }
  return configSchema.parse(merged);
}

/** Resolves when `predicate` holds, polling every few ms; rejects after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** A ServerContext for testing one listener or module directly: testConfig + fresh Stats, silent logger, Admission. */
export function testContext(overrides: ConfigOverrides = {}): ServerContext {
  const config = testConfig(overrides);
  const stats = Stats.create();
  const gauges: GaugeRegistry = new Map();
  return { config, stats, logger: Logger.silent(), gauges, admission: new Admission(config, stats, gauges) };
}

/** Completes a hand-built context with an Admission for its config and stats. */
export function withAdmission(partial: Omit<ServerContext, "admission">): ServerContext {
  return { ...partial, admission: new Admission(partial.config, partial.stats) };
}

/** One HPS/1 frame a raw client received (the payload copied). */
export interface RawFrame {
  opcode: number;
  status: number;
  requestId: number;
  payload: Uint8Array;
}

/** A raw TCP client that records everything received and when the server closed. */
export interface RawClient {
  socket: Socket<undefined>;
  received: () => Uint8Array;
  /** The received bytes decoded as HPS/1 frames (a trailing partial frame is left out). */
  frames: () => RawFrame[];
  isClosed: () => boolean;
  /** Settles when the connection has closed (the server's end is answered with ours). */
  closed: Promise<void>;
}

export async function rawConnect(port: number): Promise<RawClient> {
  const chunks: Uint8Array[] = [];
  let isClosed = false;
  let onClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const markClosed = () => {
    isClosed = true;
    onClosed();
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_socket, chunk) => void chunks.push(new Uint8Array(chunk)),
      end: (s) => void s.end(),
      close: markClosed,
      error: markClosed,
    },
  });
  const received = () => {
    const all = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return all;
  };
  const frames = () => {
    const decoded: RawFrame[] = [];
    new FrameDecoder(1 << 30).push(received(), (opcode, status, requestId, payload) =>
      decoded.push({ opcode, status, requestId, payload: payload.slice() }),
    );
    return decoded;
  };
  return { socket, received, frames, isClosed: () => isClosed, closed };
}
