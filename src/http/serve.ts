// The http protocol's listener: its servers with the running HttpSet, reloads swapped in on them, new certificates, stop.
import type { Server } from "bun";
import { changedParts } from "../config/reload.ts";
import type { Config } from "../config/schema.ts";
import {
  UNCHANGED,
  type Listener,
  type PreparedReconfigure,
  type ServerContext,
  type StopOptions,
} from "../context.ts";
import type { Logger } from "../log.ts";
import { startSocketSampling } from "../stats/socket-sampler.ts";
import { UpstreamStats } from "../upstream/stats.ts";
import { Upstreams, usedUpstreams } from "../upstream/upstreams.ts";
import type { HttpHandler } from "./handler.ts";
import { withListenErrors } from "../listen-errors.ts";
import { HttpSet, type ServeTarget } from "./http-set.ts";
import { HttpListeners } from "./listeners.ts";
import { startRedirect } from "./redirect.ts";
import { requireDirectory } from "./root.ts";
import type { RouteValue } from "./routes.ts";

/** How often a graceful stop looks at the requests still in flight. */
const DRAIN_POLL_MS = 10;
/**
 * A graceful stop first keeps serving for up to this long, answering every request with Connection: close, so a
 * keep-alive client learns on its next response to reconnect (to a successor bound with reuse_port) instead of
 * having its next request cut by the close of an idle connection. It ends sooner once no request has come for
 * DRAIN_QUIET_MS (an idle server stops at once). Measured in test/ship/upgrade.test.ts.
 */
const DRAIN_KEEPALIVE_MS = 1000;
const DRAIN_QUIET_MS = 200;

/** The notes a set's settings call for, at start and after a reload. */
function logNotes(logger: Logger, http: Config["http"]): void {
  if (http.static_routes) {
    logger.info(
      `http: static_routes on: cached files are answered by Bun without JavaScript and are not counted in request stats (gauge httpCache.staticRoutes: paths served so); Range is ignored for them; files rechecked every ${http.cache_revalidate_ms} ms`,
    );
  }
  if (!http.connection_limits) {
    logger.info(
      "http: limits.max_connections and limits.max_connections_per_ip are not applied to HTTP connections; set http.connection_limits = true to apply them",
    );
  }
}

/**
 * The first phase of a graceful stop: every request, native routes included, goes through `handler`, which answers
 * with Connection: close; waits until no request came for DRAIN_QUIET_MS, or `maxMs` passed. Bun's stop(false) then
 * closes only connections whose client has not sent a request for that long (the usual keep-alive idle race), and
 * no client that keeps sending finds its connection closed under a request.
 */
async function drainKeepAlive(server: ServeTarget, handler: HttpHandler, maxMs: number): Promise<void> {
  const startedMs = performance.now();
  handler.startDraining(startedMs);
  server.reload({ routes: {}, fetch: handler.fetch, error: handler.error });
  for (;;) {
    const nowMs = performance.now();
    if (nowMs - startedMs >= maxMs) return;
    if (server.pendingRequests === 0 && nowMs - handler.lastRequestWhileDrainingMs >= DRAIN_QUIET_MS) return;
    await Bun.sleep(DRAIN_POLL_MS);
  }
}

/** Starts the public HTTP listener for `protocol = "http"` (HTTPS, HTTP/2 and HTTP/3 as configured). */
export async function startHttp(context: ServerContext): Promise<Listener> {
  const { config, logger } = context;
  const server = await HttpListeners.start(context);
  const port = server.port;
  // The upstream groups outlive the handler sets: a reload changes them in place (pools and health are kept).
  const upstreams = new Upstreams(usedUpstreams(config), {
    stats: context.upstreamStats ?? UpstreamStats.create(),
    logger,
    publishesGauges: true,
  });
  let current: HttpSet;
  try {
    current = new HttpSet(context, null, port, upstreams);
  } catch (error) {
    upstreams.stop();
    await server.close();
    throw error;
  }
  const serve = (set: HttpSet, routes: Record<string, RouteValue>) => {
    server.reload({ routes, fetch: set.handler.fetch, error: set.handler.error });
    if (set.http3Handler !== null) {
      server.reloadHttp3({ routes: {}, fetch: set.http3Handler.fetch, error: set.http3Handler.error });
    }
  };
  serve(current, {});
  current.attach(server);
  let redirect: Server<undefined> | null = null;
  if (config.tls.enabled && config.http.redirect_port !== 0) {
    try {
      redirect = await withListenErrors(
        `${config.server.bind}:${config.http.redirect_port}`,
        "http.redirect_port",
        async () =>
          startRedirect(config, {
            httpsPort: port,
            accessLog: () => current.accessLog,
            context: () => current.context,
          }),
      );
    } catch (error) {
      current.release(null);
      upstreams.stop();
      await server.close();
      throw error;
    }
    logger.info(
      `http: redirecting http://${config.server.bind}:${redirect.port} to https:// (ACME challenges from ${config.http.root})`,
    );
  }
  if (config.tls.enabled) logger.info(`http: HTTPS on ${config.server.bind}:${port}${protocolsOf(config)}`);
  // Bun.serve reports no connections: they are counted from the kernel's socket table instead. One sampler sees the
  // whole process, so with several I/O threads only the main thread's listener runs it.
  const sampling = Bun.isMainThread ? startSocketSampling(context.stats, port) : null;
  logNotes(logger, config.http);

  let stopped: Promise<void> | null = null;
  /** Access logs of released sets still closing (flush, end). */
  const closingLogs = new Set<Promise<void>>();
  const track = (closing: Promise<void> | null): void => {
    if (closing === null) return;
    const tracked = closing.catch((error: unknown) => {
      logger.error(
        `http: closing the previous access log failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    closingLogs.add(tracked);
    void tracked.then(() => closingLogs.delete(tracked));
  };

  /**
   * First phase of a reload: checks the new root and builds the new set (opening a new access log if it needs one);
   * nothing running changes, and a failure rejects here. Commit swaps it in synchronously, and when the reload read
   * new certificates (next.tls), starts serving them to new connections (HttpListeners.applyTls).
   */
  const prepareReconfigure = async (next: ServerContext): Promise<PreparedReconfigure> => {
    if (stopped !== null) throw new Error("http: the listener is stopping; the new configuration was not applied");
    const nextTls = next.tls ?? null;
    const tlsChanges = server.tlsChanges(nextTls);
    const changed = changedParts(current.context.config, next.config);
    const setChanges = changed.has("http-handler");
    const upstreamsChange = changed.has("upstreams");
    if (!setChanges && !tlsChanges && !upstreamsChange) return UNCHANGED;
    let replacement: HttpSet | null = null;
    if (setChanges) {
      await requireDirectory(next.config.http.root);
      for (const route of next.config.http.routes) if (route.root !== "") await requireDirectory(route.root);
      replacement = new HttpSet(next, current, port, upstreams);
    }
    const running = current;
    return {
      commit() {
        if (stopped !== null || current !== running) {
          replacement?.discard(running);
          return;
        }
        // The groups first: the new routes may name a group this reload adds.
        if (upstreamsChange) upstreams.reconfigure(usedUpstreams(next.config));
        if (replacement !== null) {
          // Requests from here on reach the new handler; natively routed paths of the old set are dropped with its routes.
          serve(replacement, {});
          current = replacement;
          track(running.release(replacement));
          replacement.attach(server);
          next.logger.info(`http: configuration applied: serving ${next.config.http.root}`);
          logNotes(next.logger, next.config.http);
        }
        if (tlsChanges && nextTls !== null) {
          server.applyTls(nextTls).then(
            () => next.logger.info("http: new certificates served to new connections"),
            (error: unknown) => next.logger.error(`http: ${(error as Error).message}`),
          );
        }
      },
      abort() {
        replacement?.discard(running);
      },
    };
  };

  const stop = async (options: StopOptions): Promise<void> => {
    current.stopRoutes();
    if (options.graceful) {
      const deadline = Date.now() + options.timeoutMs;
      await drainKeepAlive(server, current.handler, Math.min(DRAIN_KEEPALIVE_MS, options.timeoutMs));
      // Stops listening and closes idle connections; busy ones close once their response is sent.
      server.stopAccepting();
      void redirect?.stop(false);
      while (server.pendingRequests > 0 && Date.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    }
    await Promise.all([server.close(), redirect?.stop(true)]);
    upstreams.stop();
    sampling?.sampleNow(); // the last view: connections closed by the stop are counted closed
    sampling?.stop();
    track(current.release(null)); // releases the admission slots this listener still holds; closes its log
    context.gauges.delete("httpCache");
    await Promise.all(closingLogs);
  };
  return {
    port,
    inFlight: () => server.pendingRequests,
    stop: (options) => (stopped ??= stop(options)),
    reopenLogs: async () => {
      if (current.accessLog !== null) await current.accessLog.reopen();
    },
    prepareReconfigure,
  };
}

/** ", HTTP/2, HTTP/3" as configured, for the start-up line of a TLS listener. */
function protocolsOf(config: Config): string {
  const extra: string[] = [];
  if (config.http.http2) extra.push("HTTP/2");
  if (config.http.http3) extra.push("HTTP/3 (UDP)");
  return extra.length === 0 ? " (HTTP/1.1)" : ` (HTTP/1.1, ${extra.join(", ")})`;
}
