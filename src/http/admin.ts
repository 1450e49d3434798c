// The admin listener: a small Bun.serve for health, statistics, Prometheus metrics and the live dashboard.
import type { Server, TLSOptions } from "bun";
import type { Listener, ServerContext, StopOptions } from "../context.ts";
import type { FleetStatsSource } from "../fleet/fleet.ts";
import { formatFleetMetrics, formatFleetReport } from "../fleet/fleet-report.ts";
import { PROMETHEUS_CONTENT_TYPE, renderMetrics } from "../stats/prometheus.ts";
import { formatReport } from "../stats/report.ts";
import { SnapshotSampler, snapshot } from "../stats/snapshot.ts";
import { requirePortFree, Rotation, servedListener } from "../tls/rotation.ts";
import { sameTls, tlsOptions, type TlsState } from "../tls/tls-state.ts";
import { dashboardHtml } from "./dashboard.ts";

export interface AdminOptions {
  /** Whether the server accepts traffic; false from the moment a graceful drain begins (/readyz answers 503). */
  isReady(): boolean;
}

/** How often /events pushes a snapshot. */
const EVENT_INTERVAL_MS = 1000;
/** Events queued for a client that is not reading before its stream is closed. */
const MAX_UNREAD_EVENTS = 60;

const NO_STORE = { "Cache-Control": "no-store" } as const;
const TEXT_HEADERS = { "Content-Type": "text/plain; charset=utf-8", ...NO_STORE } as const;

const INDEX_TEXT = `hps admin
  /livez      200 while the process runs
  /readyz     200 when accepting traffic, 503 while draining
  /stats      JSON snapshot of every counter and gauge
  /status     human-readable status
  /metrics    Prometheus text format 0.0.4
  /dashboard  live charts
  /events     Server-Sent Events: one snapshot per second
In a fleet (fleet.redis_url), ?scope=fleet on /stats, /status, /metrics and /events gives every instance and their sum.
`;

/**
 * Pushes one event a second to every open /events stream; runs only while someone listens. `produce` makes the
 * event (a snapshot, or the fleet's view read from Redis); `minAdvanceMs` is the sampling window it may use.
 */
class EventBroadcaster {
  private readonly produce: (minAdvanceMs: number) => object | Promise<object>;
  private readonly restartWindow: (() => void) | null;
  private readonly streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  private readonly encoder = new TextEncoder();
  private timer: Timer | null = null;
  private ticking = false;
  /** The last event broadcast (while the broadcast runs): what a viewer joining it gets at once. */
  private lastMessage: Uint8Array | null = null;

  /**
   * `restartWindow` starts a new sampling window when the broadcast starts: the first event then waits for the first
   * tick. Null when `produce` keeps no window of its own (the fleet's view): the first event is made at once.
   */
  constructor(produce: (minAdvanceMs: number) => object | Promise<object>, restartWindow: (() => void) | null) {
    this.produce = produce;
    this.restartWindow = restartWindow;
  }

  get size(): number {
    return this.streams.size;
  }

  open(): Response {
    let own: ReadableStreamDefaultController<Uint8Array> | null = null;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        own = controller;
        this.streams.add(controller);
        // Tell the browser how soon to reconnect.
        controller.enqueue(this.encoder.encode(`retry: ${EVENT_INTERVAL_MS}\n`));
        if (this.lastMessage !== null) {
          controller.enqueue(this.lastMessage); // joining a running broadcast: its last event, at once
        } else if (this.restartWindow !== null) {
          // Nobody was watching: the sampler's window reaches back to the last broadcast (or the start), and rates
          // over it would be drawn as the last second's. A window starts now; the first tick's event ends it.
          if (this.timer === null) this.restartWindow();
        } else {
          void Promise.resolve(this.produce(EVENT_INTERVAL_MS)).then((event) => {
            try {
              controller.enqueue(this.message(event));
            } catch {
              // Closed before the first event was ready.
            }
          });
        }
        this.timer ??= setInterval(() => void this.tick(), EVENT_INTERVAL_MS);
      },
      cancel: () => {
        if (own !== null) this.remove(own);
      },
    });
    return new Response(body, {
      headers: {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-store",
        Connection: "keep-alive",
      },
    });
  }

  closeAll(): void {
    for (const controller of this.streams) {
      try {
        controller.close();
      } catch {
        // Already closed by the client.
      }
    }
    this.streams.clear();
    this.stopTimer();
  }

  private async tick(): Promise<void> {
    // A slow producer (Redis) skips ticks rather than piling them up.
    if (this.ticking) return;
    this.ticking = true;
    let message: Uint8Array;
    try {
      message = this.message(await this.produce(0));
    } finally {
      this.ticking = false;
    }
    if (this.timer === null) return; // every stream closed meanwhile
    this.lastMessage = message;
    for (const controller of this.streams) {
      try {
        // A client that stopped reading but keeps the socket open must not grow our memory: drop it.
        if ((controller.desiredSize ?? 0) < -MAX_UNREAD_EVENTS) {
          controller.close();
          this.remove(controller);
        } else controller.enqueue(message);
      } catch {
        this.remove(controller);
      }
    }
  }

  private message(snap: object): Uint8Array {
    return this.encoder.encode(`data: ${JSON.stringify(snap)}\n\n`);
  }

  private remove(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.streams.delete(controller);
    if (this.streams.size === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.lastMessage = null;
  }
}

/** Text in the spirit of nginx's stub_status, followed by the full status report. */
function statusText(context: ServerContext): string {
  const snap = snapshot(context);
  const c = snap.counters;
  const head = [
    `Active connections: ${c.activeConnections}`,
    "server accepts handled requests",
    ` ${c.connectionsAccepted + c.connectionsRefused} ${c.connectionsAccepted} ${c.requests}`,
    "",
  ];
  return `${[...head, ...formatReport(snap)].join("\n")}\n`;
}

/** The fleet's view for /events?scope=fleet; while Redis is unavailable, an event saying so. */
async function fleetEvent(fleet: FleetStatsSource): Promise<object> {
  try {
    return (await fleet.read()).view;
  } catch (error) {
    return { scope: "fleet", error: `fleet statistics unavailable: ${(error as Error).message}` };
  }
}

/**
 * Answers from this instance's statistics (no scope, or ?scope=instance) or from the fleet's (?scope=fleet): 404
 * when the instance is not in a fleet, 503 while Redis is unavailable, 400 for another scope.
 */
function scoped(
  request: Request,
  fleet: FleetStatsSource | null | undefined,
  instance: () => Response,
  fromFleet: (fleet: FleetStatsSource) => Response | Promise<Response>,
): Response | Promise<Response> {
  const scope = new URL(request.url).searchParams.get("scope");
  if (scope === null || scope === "instance") return instance();
  if (scope !== "fleet") {
    return new Response(`scope must be instance or fleet (got "${scope}")\n`, { status: 400, headers: TEXT_HEADERS });
  }
  if (fleet === null || fleet === undefined) {
    return new Response("this instance is not in a fleet (fleet.redis_url is empty)\n", {
      status: 404,
      headers: TEXT_HEADERS,
    });
  }
  return Promise.resolve()
    .then(() => fromFleet(fleet))
    .catch(
      (error: unknown) =>
        new Response(`fleet statistics unavailable: ${(error as Error).message}\n`, {
          status: 503,
          headers: { ...TEXT_HEADERS, "Retry-After": "1" },
        }),
    );
}

/** Starts the admin listener on config.admin.bind:port. */
export async function startAdmin(context: ServerContext, options: AdminOptions): Promise<Listener> {
  const { bind, port } = context.config.admin;
  const sampler = new SnapshotSampler(context);
  const events = new EventBroadcaster(
    (minAdvanceMs) => sampler.take(minAdvanceMs),
    () => sampler.restart(),
  );
  const fleet = context.fleet;
  const fleetEvents = fleet ? new EventBroadcaster(() => fleetEvent(fleet), null) : null;
  const metricsHeaders = { "Content-Type": PROMETHEUS_CONTENT_TYPE, ...NO_STORE };
  // The handlers are built per server: admin.tls rotates servers on new certificates (src/tls/rotation.ts).
  const open = (tls: TLSOptions[] | undefined, listenPort: number): Server<undefined> =>
    Bun.serve({
      hostname: bind,
      port: listenPort,
      // With server.reuse_port a successor (hps upgrade) binds the admin port while this process drains; with TLS,
      // the next admin server does on a certificate reload.
      reusePort: context.config.server.reuse_port || tls !== undefined,
      ...(tls === undefined ? {} : { tls }),
      routes: {
        "/": new Response(INDEX_TEXT, { headers: TEXT_HEADERS }),
        "/livez": new Response("ok\n", { headers: TEXT_HEADERS }),
        "/readyz": () =>
          options.isReady()
            ? new Response("ready\n", { headers: TEXT_HEADERS })
            : new Response("draining\n", { status: 503, headers: TEXT_HEADERS }),
        "/stats": (request) =>
          scoped(
            request,
            fleet,
            () => Response.json(snapshot(context), { headers: NO_STORE }),
            async (source) => Response.json((await source.read()).view, { headers: NO_STORE }),
          ),
        "/status": (request) =>
          scoped(
            request,
            fleet,
            () => new Response(statusText(context), { headers: TEXT_HEADERS }),
            async (source) =>
              new Response(`${formatFleetReport((await source.read()).view).join("\n")}\n`, { headers: TEXT_HEADERS }),
          ),
        "/metrics": (request) =>
          scoped(
            request,
            fleet,
            () => new Response(renderMetrics(context), { headers: metricsHeaders }),
            async (source) => {
              const { view, histogram } = await source.read();
              return new Response(formatFleetMetrics(view, histogram), { headers: metricsHeaders });
            },
          ),
        "/dashboard": new Response(dashboardHtml(context.config.server.protocol, Boolean(fleet)), {
          headers: { "Content-Type": "text/html; charset=utf-8", ...NO_STORE },
        }),
        "/events": (request, self) =>
          scoped(
            request,
            fleet,
            () => {
              // The stream lives as long as the browser tab; it writes every second, but never let idleness cut it.
              self.timeout(request, 0);
              return events.open();
            },
            () => {
              self.timeout(request, 0);
              return fleetEvents!.open();
            },
          ),
      },
      fetch() {
        return new Response("not found; see / for the admin endpoints\n", { status: 404, headers: TEXT_HEADERS });
      },
      error(error) {
        context.logger.error(`admin: ${error.message}`);
        return new Response("internal error\n", { status: 500, headers: TEXT_HEADERS });
      },
    });
  // admin.tls: the [tls] certificates, rotated on reload like the public listener's.
  let tlsState = context.config.admin.tls ? (context.tls ?? null) : null;
  let rotation: Rotation<Server<undefined>> | null = null;
  let server: Server<undefined>;
  if (tlsState !== null) {
    const steer = !context.config.server.reuse_port;
    if (steer) requirePortFree(bind, port);
    rotation = await Rotation.start({
      tls: tlsOptions(tlsState),
      port,
      open,
      portOf: (started) => started.port!,
      wrap: servedListener,
      steer,
    });
    server = rotation.active;
  } else {
    server = open(undefined, port);
  }
  const actualPort = server.port;
  if (actualPort === undefined) throw new Error(`admin listener on ${bind}:${port} has no port`);
  const scheme = tlsState === null ? "http" : "https";
  context.logger.info(`admin listening on ${scheme}://${bind.includes(":") ? `[${bind}]` : bind}:${actualPort}/`);

  let stopping: Promise<void> | null = null;
  return {
    port: actualPort,
    inFlight: () => {
      let pending = 0;
      for (const each of rotation === null ? [server] : rotation.all()) pending += each.pendingRequests;
      return Math.max(0, pending - events.size - (fleetEvents?.size ?? 0));
    },
    stop(stopOptions: StopOptions): Promise<void> {
      fleetEvents?.closeAll();
      stopping ??= rotation === null ? stopAdmin(server, events, stopOptions) : stopRotation(rotation, events);
      return stopping;
    },
    async applyTls(next: TlsState) {
      if (rotation === null || sameTls(tlsState, next)) return;
      await rotation.rotate(tlsOptions(next));
      tlsState = next; // only once served: a rotation that failed is tried again
    },
  };
}

/** A TLS admin listener stops at once: its only long requests are event streams, closed first. */
async function stopRotation(rotation: Rotation<Server<undefined>>, events: EventBroadcaster): Promise<void> {
  events.closeAll();
  await rotation.close();
}

async function stopAdmin(server: Server<undefined>, events: EventBroadcaster, options: StopOptions): Promise<void> {
  // Event streams never end by themselves: close them first so a graceful stop has something to wait for.
  events.closeAll();
  if (!options.graceful) {
    await server.stop(true);
    return;
  }
  let timer: Timer | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, options.timeoutMs);
  });
  await Promise.race([server.stop(false), deadline]);
  clearTimeout(timer);
  await server.stop(true);
}
