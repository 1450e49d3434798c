// The Bun.serve servers of the public HTTP port: HTTP/1.1 (+ HTTP/2) over TCP, rotated on a TLS reload, and HTTP/3.
import type { Server, TLSOptions, WebSocketHandler } from "bun";
import type { Config } from "../config/schema.ts";
import type { ServerContext } from "../context.ts";
import { requirePortFree, Rotation, servedListener, steersRotations } from "../tls/rotation.ts";
import { sameTls, tlsOptions, type TlsState } from "../tls/tls-state.ts";
import { WEBSOCKET_RELAY } from "../upstream/websocket.ts";
import type { RouteValue } from "./routes.ts";

/** What a server answers with; swapped by reload() without restarting it. */
export interface ServeHandlers {
  routes: Record<string, RouteValue>;
  fetch: (request: Request, server: Server<undefined>) => Response | Promise<Response>;
  error: (error: Error) => Response;
}

/** Answers nothing until the handlers are given (reload is called before the event loop turns). */
const NOT_READY: ServeHandlers = {
  routes: {},
  fetch: () => new Response("starting\n", { status: 503 }),
  error: () => new Response("starting\n", { status: 503 }),
};

/**
 * The TCP server (a rotation of them with TLS) and, with http.http3, the HTTP/3 server on the same port number
 * (UDP; `http1: false, http2: false` makes Bun bind only QUIC, so its requests are known to be HTTP/3).
 */
export class HttpListeners {
  private tcp: Rotation<Server<undefined>> | Server<undefined> | null = null;
  private http3: Server<undefined> | null = null;
  /** stopAccepting() or close() was called: a certificate rotation under way opens nothing more. */
  private stopping = false;
  private handlers: ServeHandlers = NOT_READY;
  private http3Handlers: ServeHandlers = NOT_READY;
  /** The port bound (server.port, or the one picked for port 0). */
  port = 0;

  private constructor(
    private readonly config: Config,
    private tls: TlsState | null,
  ) {}

  /**
   * Binds the port (with TLS: with reusePort, so certificates can be rotated) and the HTTP/3 port when asked for.
   * The servers answer 503 until reload() gives them handlers, which the caller does before the event loop turns.
   */
  static async start(context: ServerContext): Promise<HttpListeners> {
    const { config } = context;
    const tls = context.tls ?? null;
    if (config.tls.enabled && tls === null) throw new Error("http: tls.enabled but no certificates were loaded");
    const listeners = new HttpListeners(config, tls);
    if (tls === null) {
      const server = listeners.openTcp(undefined, config.server.port, config.server.reuse_port);
      listeners.tcp = server;
      listeners.port = server.port!;
      return listeners;
    }
    if (steersRotations(config)) requirePortFree(config.server.bind, config.server.port);
    const rotation = await Rotation.start<Server<undefined>>({
      tls: tlsOptions(tls),
      port: config.server.port,
      open: (options, port) => listeners.openTcp(options, port, true),
      portOf: (server) => server.port!,
      wrap: servedListener,
      steer: steersRotations(config),
    });
    listeners.tcp = rotation;
    listeners.port = rotation.port;
    if (config.http.http3) {
      try {
        listeners.http3 = listeners.openHttp3(tlsOptions(tls));
      } catch (error) {
        await listeners.close();
        throw new Error(
          `http.http3: cannot listen for QUIC on UDP ${config.server.bind}:${rotation.port} (${(error as Error).message})`,
        );
      }
    }
    return listeners;
  }

  private openTcp(tls: TLSOptions[] | undefined, port: number, reusePort: boolean): Server<undefined> {
    const { config } = this;
    return Bun.serve({
      hostname: config.server.bind,
      port,
      reusePort,
      development: false,
      idleTimeout: config.http.keepalive_timeout_s,
      // Bodies are never kept: a Content-Length over limits.max_request_bytes gets a counted 413 from the handler, and a
      // body of unknown length is read up to the limit there. Bun's own limit would answer 413 before any JavaScript runs, uncounted.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      http2: config.http.http2,
      ...(tls === undefined ? {} : { tls }),
      ...this.handlers,
      // A proxied route relays WebSocket upgrades (src/upstream/websocket.ts); nothing else upgrades. The server is
      // typed by its handlers (Server<undefined>); the relay is the data of the only sockets that exist.
      websocket: WEBSOCKET_RELAY as unknown as WebSocketHandler<undefined>,
    });
  }

  private openHttp3(tls: TLSOptions[]): Server<undefined> {
    const { config } = this;
    return Bun.serve({
      hostname: config.server.bind,
      port: this.port,
      development: false,
      idleTimeout: config.http.keepalive_timeout_s,
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      http1: false,
      http2: false,
      http3: true,
      tls,
      ...this.http3Handlers,
    });
  }

  /** The TCP servers with connections: the one accepting first, then those retiring after a rotation. */
  private tcpServers(): Server<undefined>[] {
    const tcp = this.tcp!;
    return tcp instanceof Rotation ? tcp.all() : [tcp];
  }

  private servers(): Server<undefined>[] {
    const servers = this.tcpServers();
    if (this.http3 !== null) servers.push(this.http3);
    return servers;
  }

  /** New handlers for the TCP servers (every one, retiring ones too: they answer with the running configuration). */
  reload(handlers: ServeHandlers): void {
    this.handlers = handlers;
    for (const server of this.tcpServers()) server.reload(handlers);
  }

  /** New handlers for the HTTP/3 server (its requests are logged as HTTP/3.0, so it has handlers of its own). */
  reloadHttp3(handlers: ServeHandlers): void {
    this.http3Handlers = handlers;
    this.http3?.reload(handlers);
  }

  /** Requests being answered now, on every server. */
  get pendingRequests(): number {
    let pending = 0;
    for (const server of this.servers()) pending += server.pendingRequests;
    return pending;
  }

  /** Whether `state` would change what the servers are given (then applyTls rotates them). */
  tlsChanges(state: TlsState | null): boolean {
    return this.tls !== null && !sameTls(this.tls, state);
  }

  /**
   * Serves `state`'s certificates from now on: the TCP server is rotated (open connections finish on the old one).
   * The HTTP/3 server is closed and opened again: QUIC connections cannot move to a new socket, so they end and their
   * clients reconnect (or use HTTP/2 meanwhile).
   */
  async applyTls(state: TlsState): Promise<void> {
    const tcp = this.tcp;
    if (!(tcp instanceof Rotation) || !this.tlsChanges(state)) return;
    const options = tlsOptions(state);
    try {
      await tcp.rotate(options);
    } catch (error) {
      throw new Error(
        `cannot open a listener with the new certificates (${(error as Error).message}); new connections keep the running ones`,
      );
    }
    // Only once served: a rotation that failed is tried again when a reload brings these certificates again.
    this.tls = state;
    const http3 = this.http3;
    if (http3 === null || this.stopping) return;
    await http3.stop(true);
    if (this.stopping) return;
    try {
      this.http3 = this.openHttp3(options);
    } catch (error) {
      this.http3 = null;
      throw new Error(
        `HTTP/3 is off until a restart: cannot listen for QUIC on UDP ${this.config.server.bind}:${this.port} again (${(error as Error).message}); TCP serves the new certificates`,
      );
    }
  }

  /** A graceful stop's first step: no server accepts from now on; idle keep-alive connections close. */
  stopAccepting(): void {
    this.stopping = true;
    const tcp = this.tcp!;
    if (tcp instanceof Rotation) tcp.stopAccepting();
    else void tcp.stop(false);
    void this.http3?.stop(false);
  }

  /** Closes every server and connection now. */
  async close(): Promise<void> {
    this.stopping = true;
    const tcp = this.tcp;
    await Promise.all([tcp instanceof Rotation ? tcp.close() : tcp?.stop(true), this.http3?.stop(true)]);
  }
}
