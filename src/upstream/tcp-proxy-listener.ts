// The tcp_proxy protocol's listener: Bun.listen, the edge's admission (after a PROXY header from trusted proxies),
// one TcpProxySession per client connection to proxy.upstream, an idle sweep, reload and graceful stop.
import type { Socket, TCPSocketListener, TCPSocketListenOptions } from "bun";
import type { Listener, PreparedReconfigure, ServerContext, StopOptions } from "../context.ts";
import { Refusal } from "../net/admission.ts";
import { unmapIpv4 } from "../net/cidr.ts";
import { ProxyHeaderReader, ProxyParse } from "../net/proxy-protocol.ts";
import { Counter } from "../stats/stats.ts";
import { UpstreamStats } from "./stats.ts";
import { TcpProxySession } from "./tcp-proxy.ts";
import { Upstreams, usedUpstreams } from "./upstreams.ts";

/** One client connection. */
interface Client {
  socket: Socket<Client>;
  /** The client as admitted (the PROXY header's source when a trusted proxy sent one). */
  address: string;
  port: number;
  /** Reading a PROXY header from a trusted proxy before admission. */
  reader: ProxyHeaderReader | null;
  session: TcpProxySession | null;
  isAdmitted: boolean;
  isClosed: boolean;
  /** The sweep tick of the last byte either way. */
  lastActiveTick: number;
  /** Position in the listener's open list. */
  index: number;
}

/** Bun.listen accepts reusePort (SO_REUSEPORT + SO_REUSEADDR) although its listen options type omits it. */
type ListenOptions = TCPSocketListenOptions<Client> & { reusePort: boolean };

/** The idle sweep's period bounds: a connection idle past limits.connection_timeout_s closes within 1.25x of it. */
const SWEEPS_PER_TIMEOUT = 4;
const MIN_SWEEP_MS = 5;
const MAX_SWEEP_MS = 1000;
/** How often a graceful stop looks whether every session has ended. */
const DRAIN_POLL_MS = 10;

export async function startTcpProxy(context: ServerContext): Promise<Listener> {
  return new TcpProxyListener(context).start();
}

class TcpProxyListener {
  private context: ServerContext;
  private readonly upstreams: Upstreams;
  private readonly open: Client[] = [];
  private listener: TCPSocketListener<Client> | null = null;
  private tick = 0;
  private idleTicks = 0;
  private sweepMs = MAX_SWEEP_MS;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private isDraining = false;
  private isStopped = false;

  constructor(context: ServerContext) {
    this.context = context;
    this.upstreams = new Upstreams(usedUpstreams(context.config), {
      stats: context.upstreamStats ?? UpstreamStats.create(),
      logger: context.logger,
      publishesGauges: true,
    });
    this.setIdleTimeout(context.config.limits.connection_timeout_s);
  }

  start(): Listener {
    const { server } = this.context.config;
    const options: ListenOptions = {
      hostname: server.bind,
      port: server.port,
      reusePort: server.reuse_port || server.io_threads > 1,
      // Half-open: a client's FIN is passed to the server, which may still answer.
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        open: (socket) => this.opened(socket),
        data: (socket, chunk) => this.received(socket.data, chunk),
        drain: (socket) => {
          const client = socket.data;
          client.lastActiveTick = this.tick;
          client.session?.clientDrained();
        },
        end: (socket) => {
          const session = socket.data.session;
          if (session === null) socket.end();
          else session.clientEnded();
        },
        close: (socket) => this.closed(socket.data),
        error: (socket, error) => {
          this.context.stats.inc(Counter.errorsSystem);
          this.context.logger.debug(`tcp_proxy: connection from ${socket.remoteAddress}: ${error.message}`);
        },
      },
    };
    try {
      this.listener = Bun.listen(options);
    } catch (error) {
      this.upstreams.stop();
      throw error;
    }
    this.scheduleSweeps();
    this.context.gauges.set("tcpProxy", this.gauges);
    return {
      port: this.listener.port,
      inFlight: () => this.open.length,
      stop: (stopOptions) => this.stop(stopOptions),
      prepareReconfigure: (next) => Promise.resolve(this.prepareReconfigure(next)),
    };
  }

  private opened(socket: Socket<Client>): void {
    const { admission, config, stats } = this.context;
    const address = unmapIpv4(socket.remoteAddress);
    const client: Client = {
      socket,
      address,
      port: socket.remotePort,
      reader: null,
      session: null,
      isAdmitted: false,
      isClosed: false,
      lastActiveTick: this.tick,
      index: -1,
    };
    socket.data = client;
    if (this.isDraining) {
      stats.inc(Counter.connectionsRefused);
      socket.end();
      return;
    }
    socket.setNoDelay(config.tcp.nodelay);
    socket.setKeepAlive(config.tcp.keepalive, config.tcp.keepalive_idle_s * 1000);
    client.index = this.open.length;
    this.open.push(client);
    if (admission.expectsProxyHeader(address)) {
      client.reader = new ProxyHeaderReader(); // admission waits for the client the header names
      return;
    }
    this.admit(client);
  }

  /** Admission for the client; admitted, its session starts (the client is paused until the server is reached). */
  private admit(client: Client): boolean {
    const { admission, config, stats } = this.context;
    if (admission.admitConnection(client.address) !== Refusal.NONE) {
      client.isClosed = true;
      client.socket.end();
      return false;
    }
    client.isAdmitted = true;
    stats.connectionOpened();
    const group = this.upstreams.group(config.proxy.upstream)!;
    const session = new TcpProxySession(group, client.socket, {
      clientAddress: client.address,
      clientPort: client.port,
      localAddress: client.socket.localAddress,
      localPort: client.socket.localPort,
      sendProxyHeader: config.proxy.send_proxy_protocol,
      onBytes: (fromClient, toClient) => {
        client.lastActiveTick = this.tick;
        if (fromClient > 0) stats.add(Counter.bytesRead, fromClient);
        if (toClient > 0) stats.add(Counter.bytesWritten, toClient);
      },
      onDone: () => {},
    });
    client.session = session;
    session.start();
    return true;
  }

  private received(client: Client, chunk: Uint8Array): void {
    if (client.isClosed) return;
    client.lastActiveTick = this.tick;
    if (client.reader === null) {
      client.session?.fromClient(chunk);
      return;
    }
    const header = client.reader.push(chunk, true);
    if (header.result === ProxyParse.NEED_MORE) return;
    const rest = client.reader.rest;
    client.reader = null;
    if (header.result === ProxyParse.ERROR) {
      this.context.stats.inc(Counter.errorsProtocol);
      this.context.logger.warn(
        `tcp_proxy: PROXY header from trusted proxy ${client.address}: ${header.reason}; closing`,
      );
      client.isClosed = true;
      client.socket.end();
      return;
    }
    // LOCAL / UNKNOWN (the proxy's own health check): the proxy itself is the client.
    if (header.address !== null) {
      client.address = unmapIpv4(header.address);
      client.port = header.port;
    }
    if (this.admit(client) && rest.byteLength > 0) client.session!.fromClient(rest);
  }

  private closed(client: Client): void {
    if (client.index < 0) return;
    client.isClosed = true;
    client.session?.clientClosed();
    if (client.isAdmitted) {
      this.context.admission.releaseConnection(client.address);
      this.context.stats.connectionClosed();
    }
    const open = this.open;
    const last = open.pop()!;
    if (last !== client) {
      open[client.index] = last;
      last.index = client.index;
    }
    client.index = -1;
  }

  /**
   * A reload: proxy.upstream, proxy.send_proxy_protocol and socket options apply to connections opened from now on;
   * the idle timeout to every connection; the upstream groups change in place (see UpstreamGroup.reconfigure).
   */
  private prepareReconfigure(next: ServerContext): PreparedReconfigure {
    return {
      commit: () => {
        if (this.isStopped) return;
        this.context = next;
        this.upstreams.reconfigure(usedUpstreams(next.config));
        const before = this.sweepMs;
        const wasSweeping = this.idleTicks > 0;
        this.setIdleTimeout(next.config.limits.connection_timeout_s);
        if (this.sweepMs !== before || wasSweeping !== this.idleTicks > 0) this.scheduleSweeps();
      },
      abort: () => {},
    };
  }

  private setIdleTimeout(connectionTimeoutSeconds: number): void {
    const idleMs = connectionTimeoutSeconds * 1000;
    this.sweepMs = Math.min(MAX_SWEEP_MS, Math.max(MIN_SWEEP_MS, idleMs / SWEEPS_PER_TIMEOUT));
    this.idleTicks = idleMs > 0 ? Math.ceil(idleMs / this.sweepMs) : 0;
  }

  private scheduleSweeps(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.idleTicks === 0) return;
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
  }

  /** Closes connections idle (no byte either way) past limits.connection_timeout_s. */
  private sweep(): void {
    const tick = ++this.tick;
    const open = this.open;
    for (let i = open.length - 1; i >= 0; i--) {
      const client = open[i];
      if (client === undefined || client.isClosed || tick - client.lastActiveTick < this.idleTicks) continue;
      this.context.stats.inc(Counter.connectionsTimedOut);
      client.isClosed = true;
      client.socket.end();
    }
  }

  private readonly gauges = (): Record<string, number> => ({ openConnections: this.open.length });

  /** Graceful: no new connections; open ones end on their own (both sides done) within the deadline, then close. */
  private async stop(options: StopOptions): Promise<void> {
    if (this.isStopped) return;
    this.isStopped = true;
    this.isDraining = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    const listener = this.listener!;
    listener.stop(false);
    if (options.graceful) {
      const deadline = performance.now() + options.timeoutMs;
      while (this.open.length > 0 && performance.now() < deadline) await Bun.sleep(DRAIN_POLL_MS);
    }
    listener.stop(true);
    for (let i = this.open.length - 1; i >= 0; i--) this.open[i]?.socket.terminate();
    this.upstreams.stop();
    if (this.context.gauges.get("tcpProxy") === this.gauges) this.context.gauges.delete("tcpProxy");
  }
}
