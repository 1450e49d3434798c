// Bun.listen wiring for echo and HPS/1 (plain or TLS): admission (after a PROXY header from trusted proxies), pooled
// connection state, flow control (write queue, read pauses), the idle and send-timeout sweep, graceful stop.
import type { TCPSocketListener, TCPSocketListenOptions, TLSOptions } from "bun";
import type { Listener, PreparedReconfigure, ServerContext, StopOptions } from "../context.ts";
import { Refusal, type Admission } from "../net/admission.ts";
import { unmapIpv4 } from "../net/cidr.ts";
import { ProxyHeaderReader, ProxyParse } from "../net/proxy-protocol.ts";
import type { OpRunner } from "../pool/op-runner.ts";
import { Counter } from "../stats/stats.ts";
import { ConnectionPool, resumeReading, type ConnectionState, type TcpSocket } from "./connection.ts";
import { CustomProtocol } from "./custom.ts";
import { createEchoDataHandler, type IdleClock } from "./echo.ts";
import { EMPTY_PAYLOAD, FrameDecoder, FrameStatus, encodeFrame } from "./frame.ts";
import { ConnectionSweeper } from "./sweep.ts";
import { WriteQueue } from "./write-queue.ts";
import { createHandshakeHandler } from "../tls/handshake.ts";
import { listenedListener, requirePortFree, Rotation, steersRotations } from "../tls/rotation.ts";
import { sameTls, tlsOptions, type TlsState } from "../tls/tls-state.ts";

/** Index of the "shutting down" frame in refusalFrames, after the Refusal codes. */
const REFUSED_DRAINING = 4;

/** Bun.listen accepts reusePort (it sets SO_REUSEPORT + SO_REUSEADDR) although its listen options type omits it. */
type ListenOptions = TCPSocketListenOptions<ConnectionState | undefined> & { reusePort: boolean };
type SocketListener = TCPSocketListener<ConnectionState | undefined>;

export interface TcpListener extends Listener, AsyncDisposable {
  /** Connections open on this listener now. */
  openConnections(): number;
}

/** Serves `context.config.server.protocol` ("echo" or "custom") on server.bind:server.port. */
export async function startTcp(context: ServerContext, runner: OpRunner): Promise<TcpListener> {
  return new TcpServer(context, runner).start();
}

class TcpServer {
  /** Replaced by a configuration reload; new connections read their socket options and frame limit from it. */
  private context: ServerContext;
  private readonly admission: Admission;
  /** HPS/1: the connection-level error frame per Refusal code (and REFUSED_DRAINING); empty for echo (close only). */
  private readonly refusalFrames: Uint8Array[] = [];
  private readonly pool = new ConnectionPool();
  private readonly writer: WriteQueue;
  private readonly custom: CustomProtocol | null;
  private readonly clock: IdleClock;
  private readonly sweeper: ConnectionSweeper;
  private listener: SocketListener | null = null;
  /** With TLS: the listeners of the port, rotated when the certificates change. */
  private rotation: Rotation<SocketListener> | null = null;
  private tls: TlsState | null;
  private isDraining = false;
  private isStopped = false;
  private drained: (() => void) | null = null;
  /** Past the shutdown deadline: resolved when the last connection has closed. */
  private closedAll: (() => void) | null = null;

  constructor(context: ServerContext, runner: OpRunner) {
    this.context = context;
    this.admission = context.admission;
    this.tls = context.tls ?? null;
    const config = context.config;
    this.sweeper = new ConnectionSweeper(this.pool.open, context.stats, context.logger);
    this.clock = this.sweeper.clock;
    this.writer = new WriteQueue(context.stats, this.clock, config.tcp.write_high_water_bytes);
    this.custom =
      config.server.protocol === "custom"
        ? new CustomProtocol({
            stats: context.stats,
            writer: this.writer,
            runner,
            maxInFlight: config.custom.max_in_flight,
            maxFrameBytes: config.limits.max_request_bytes,
            afterActivity: this.afterActivity,
            readHeld: this.readHeld,
            admission: this.admission,
            context,
          })
        : null;
    if (this.custom !== null) {
      const busy = (message: string) => encodeFrame(0, FrameStatus.BUSY, 0, new TextEncoder().encode(message));
      this.refusalFrames[Refusal.DENIED] = busy("address not allowed");
      this.refusalFrames[Refusal.MAX_CONNECTIONS] = busy("too many connections");
      this.refusalFrames[Refusal.PER_IP] = busy("too many connections from your address");
      this.refusalFrames[REFUSED_DRAINING] = busy("server is shutting down");
    }
  }

  async start(): Promise<TcpListener> {
    const config = this.context.config;
    if (config.server.protocol !== "echo" && config.server.protocol !== "custom") {
      throw new Error(
        `server.protocol must be "echo" or "custom" for the TCP listener (got "${config.server.protocol}")`,
      );
    }
    const options: ListenOptions = {
      hostname: config.server.bind,
      port: config.server.port,
      reusePort: config.server.reuse_port || config.server.io_threads > 1,
      // Half-open: when the peer sends FIN we still flush what is queued (or in flight), then close.
      allowHalfOpen: true,
      data: undefined,
      socket: {
        binaryType: "uint8array",
        open: this.onOpen,
        data:
          this.custom === null
            ? createEchoDataHandler(
                this.context.stats,
                this.writer,
                this.clock,
                this.afterActivity,
                this.readProxyHeader,
              )
            : this.onCustomData,
        drain: this.onDrain,
        end: this.onEnd,
        close: this.onClose,
        error: this.onError,
        ...(this.tls === null ? {} : { handshake: this.onHandshake }),
      },
    };
    if (this.tls === null) {
      if (config.tls.enabled) throw new Error("tcp: tls.enabled but no certificates were loaded");
      this.listener = Bun.listen(options);
    } else {
      // TLS listeners bind with reusePort so new certificates can be served by a new listener (src/tls/rotation.ts).
      if (steersRotations(config)) requirePortFree(config.server.bind, config.server.port);
      this.rotation = await Rotation.start<SocketListener>({
        tls: tlsOptions(this.tls),
        port: config.server.port,
        // Bun.listen takes one certificate (no SNI table; the schema refuses tls.certificates for echo and custom).
        open: (tls: TLSOptions[], port: number) =>
          Bun.listen({ ...options, port, reusePort: true, tls: tls[0]! } as ListenOptions),
        portOf: (listener) => listener.port,
        wrap: listenedListener,
        // Bun.listen exposes its socket's descriptor at run time, though its type does not say so.
        descriptorOf: (listener) => (listener as unknown as { fd?: number }).fd ?? null,
        steer: steersRotations(config),
      });
      this.listener = this.rotation.active;
    }
    this.sweeper.configure(config.limits.connection_timeout_s, config.tcp.send_timeout_s);
    this.context.gauges.set("tcp", this.gauges);
    const port = this.listener.port;
    if (this.tls !== null) {
      this.context.logger.info(
        `tcp: ${config.server.protocol} over TLS on ${config.server.bind}:${port} (client certificates: ${config.tls.client_auth})`,
      );
    }
    return {
      port,
      inFlight: () => this.custom?.inFlight() ?? 0,
      openConnections: () => this.pool.open.length,
      stop: (stopOptions: StopOptions) => this.stop(stopOptions),
      prepareReconfigure: (next: ServerContext) => Promise.resolve(this.prepareReconfigure(next)),
      [Symbol.asyncDispose]: () => this.stop({ graceful: false, timeoutMs: 0 }),
    };
  }

  /** TLS listeners: counts the handshake or its failure, and applies tls.client_auth (src/tls/handshake.ts). */
  private readonly onHandshake = createHandshakeHandler<ConnectionState | undefined>(() => this.context);

  private readonly onOpen = (socket: TcpSocket): void => {
    const config = this.context.config;
    if (this.isDraining) {
      this.context.stats.inc(Counter.connectionsRefused);
      this.refuse(socket, this.refusalFrames[REFUSED_DRAINING]);
      return;
    }
    const peer = unmapIpv4(socket.remoteAddress);
    // A trusted proxy names the client in its PROXY header: admission waits for it (readProxyHeader).
    const awaitsProxyHeader = this.admission.expectsProxyHeader(peer);
    if (!awaitsProxyHeader) {
      const refusal = this.admission.admitConnection(peer);
      if (refusal !== Refusal.NONE) {
        this.refuse(socket, this.refusalFrames[refusal]);
        return;
      }
    }
    const connection = this.pool.acquire();
    connection.socket = socket;
    connection.remoteAddress = peer;
    connection.lastActiveTick = this.clock.tick;
    socket.data = connection;
    socket.setNoDelay(config.tcp.nodelay);
    socket.setKeepAlive(config.tcp.keepalive, config.tcp.keepalive_idle_s * 1000);
    // A pooled state keeps its decoder unless a reload changed the frame limit since it was made.
    if (
      this.custom !== null &&
      (connection.decoder === null || connection.decoder.maxFrameBytes !== config.limits.max_request_bytes)
    ) {
      connection.decoder = new FrameDecoder(config.limits.max_request_bytes);
    }
    connection.isHandshaking = this.tls !== null;
    if (awaitsProxyHeader) {
      connection.proxyReader = new ProxyHeaderReader();
    } else {
      connection.isAdmitted = true;
      this.context.stats.connectionOpened();
    }
  };

  /** Admission for a connection whose client a PROXY header named. Refused: answered and closed (Admission counted why). */
  private admitProxied(connection: ConnectionState, socket: TcpSocket, clientAddress: string): boolean {
    connection.remoteAddress = clientAddress;
    const refusal = this.admission.admitConnection(clientAddress);
    if (refusal !== Refusal.NONE) {
      connection.isClosed = true;
      this.refuse(socket, this.refusalFrames[refusal]);
      return false;
    }
    connection.isAdmitted = true;
    this.context.stats.connectionOpened();
    return true;
  }

  /**
   * Answers a refused connection (error frame for HPS/1, nothing for echo) and closes it. Over TLS the refusal comes
   * before the handshake (which is not spent on a refused client, as nginx's stream limits do), so no frame can be
   * read by the client: the connection is just closed.
   */
  private refuse(socket: TcpSocket, frame: Uint8Array | undefined): void {
    // A fresh socket's send buffer takes a few dozen bytes whole; end() sends them, then FIN.
    if (frame !== undefined && this.tls === null) socket.write(frame);
    socket.end();
  }

  /**
   * Reads the PROXY header of a connection from a trusted proxy (possibly across chunks), then admits the client
   * it names. Returns the application bytes that followed the header (to be handled as data), or an empty view
   * while the header is incomplete or when the connection was closed (malformed header, refused).
   */
  private readonly readProxyHeader = (connection: ConnectionState, chunk: Uint8Array): Uint8Array => {
    const reader = connection.proxyReader!;
    const header = reader.push(chunk, true); // data chunks are fresh per event: kept as views, not copied
    if (header.result === ProxyParse.NEED_MORE) return EMPTY_PAYLOAD;
    connection.proxyReader = null;
    const socket = connection.socket!;
    if (header.result === ProxyParse.ERROR) {
      this.context.stats.inc(Counter.errorsProtocol);
      this.context.logger.warn(
        `tcp: PROXY header from trusted proxy ${connection.remoteAddress}: ${header.reason}; closing`,
      );
      connection.isClosed = true;
      socket.end();
      return EMPTY_PAYLOAD;
    }
    // LOCAL / UNKNOWN (the proxy's own health check): the proxy itself is the client.
    const clientAddress = header.address === null ? connection.remoteAddress : unmapIpv4(header.address);
    if (!this.admitProxied(connection, socket, clientAddress)) return EMPTY_PAYLOAD;
    return reader.rest;
  };

  private readonly onCustomData = (socket: TcpSocket, chunk: Uint8Array): void => {
    const connection = socket.data;
    if (connection === undefined || connection.isClosed) return;
    connection.lastActiveTick = this.clock.tick;
    this.context.stats.add(Counter.bytesRead, chunk.length);
    // Past the shutdown deadline input is only read to be dropped (see ConnectionState.isLingering).
    if (connection.isLingering) return;
    connection.isInData = true;
    const bytes = connection.proxyReader === null ? chunk : this.readProxyHeader(connection, chunk);
    if (bytes.length > 0 && !connection.isClosed) this.custom!.onData(connection, bytes);
    connection.isInData = false;
    if (connection.isCloseDeferred) {
      this.release(connection);
      return;
    }
    this.afterActivity(connection);
  };

  /** Decodes what a paused HPS/1 connection kept, outside any data event but guarded like one (a close meanwhile is deferred). */
  private readonly readHeld = (connection: ConnectionState): void => {
    if (connection.isClosed) return;
    connection.isInData = true;
    this.custom!.continueHeld(connection);
    connection.isInData = false;
    if (connection.isCloseDeferred) {
      this.release(connection);
      return;
    }
    this.afterActivity(connection);
  };

  private readonly onDrain = (socket: TcpSocket): void => {
    const connection = socket.data;
    if (connection === undefined) return;
    connection.lastActiveTick = this.clock.tick;
    if (this.writer.drain(connection)) {
      // Back under the low-water mark: read again (HPS/1 first decodes what it kept, in order).
      if (this.custom === null) resumeReading(connection);
      else this.custom.onOutputDrained(connection);
    }
    this.afterActivity(connection);
  };

  /** The peer sent FIN: answer what was asked, flush, then close. */
  private readonly onEnd = (socket: TcpSocket): void => {
    const connection = socket.data;
    if (connection === undefined) return;
    connection.closeWhenIdle = true;
    connection.hasPeerEnded = true;
    this.afterActivity(connection);
  };

  private readonly onClose = (socket: TcpSocket): void => {
    const connection = socket.data;
    if (connection === undefined || connection.socket !== socket) return;
    connection.isClosed = true;
    // Closed from inside its own data event (slow reader cut, error frame sent): the data handler releases it.
    if (connection.isInData) {
      connection.isCloseDeferred = true;
      return;
    }
    this.release(connection);
  };

  private readonly onError = (socket: TcpSocket, error: Error): void => {
    this.context.stats.inc(Counter.errorsSystem);
    this.context.logger.warn(`tcp: connection from ${socket.remoteAddress}: ${error.message}`);
  };

  private release(connection: ConnectionState): void {
    const socket = connection.socket;
    if (socket !== null) socket.data = undefined;
    if (connection.isAdmitted) {
      this.admission.releaseConnection(connection.remoteAddress);
      this.context.stats.connectionClosed();
    }
    this.pool.release(connection);
    if (this.isDraining) this.checkDrained();
    if (this.closedAll !== null && this.pool.open.length === 0) {
      const resolve = this.closedAll;
      this.closedAll = null;
      resolve();
    }
  }

  /**
   * After reads, drains and finished requests: closes a connection that was waiting to become idle
   * (peer half-closed, graceful stop, error frame sent), and tells a graceful stop when everything finished.
   */
  private readonly afterActivity = (connection: ConnectionState): void => {
    const socket = connection.socket;
    if (socket !== null && !connection.isClosed && connection.queuedBytes === 0 && connection.batchBytes === 0) {
      if (connection.isLingering) {
        // Every frame is with the kernel: a FIN follows them. The socket stays open, read and its input dropped, until
        // the client closes too (a close with unread input would be a reset, discarding frames not yet delivered).
        if (connection.isFinSent) return;
        connection.isFinSent = true;
        if (connection.hasPeerEnded) {
          connection.isClosed = true;
          socket.end();
        } else {
          socket.shutdown();
        }
        return;
      }
      // Idle also means no frames kept undecoded while reading was paused: a peer that half-closed gets every answer.
      if (
        connection.closeWhenFlushed ||
        (connection.closeWhenIdle &&
          connection.inFlight === 0 &&
          (connection.decoder === null || connection.decoder.heldBytes() === 0))
      ) {
        connection.isClosed = true;
        socket.end();
      }
    }
    if (this.isDraining) this.checkDrained();
  };

  /**
   * A configuration reload (nothing to check first): socket options and the frame limit apply to connections opened
   * from now on; tcp.write_high_water_bytes, tcp.send_timeout_s, custom.max_in_flight and the idle timeout to every
   * connection. A connection idle (or stalled) across a change of a timeout is timed in sweep periods of both values,
   * so it may close up to one old period early or late once.
   */
  private prepareReconfigure(next: ServerContext): PreparedReconfigure {
    return {
      commit: () => {
        if (this.isStopped) return;
        const config = next.config;
        this.context = next;
        const nextTls = next.tls ?? null;
        if (this.rotation !== null && nextTls !== null && !sameTls(this.tls, nextTls)) {
          this.tls = nextTls;
          this.rotation.rotate(tlsOptions(nextTls)).then(
            () => next.logger.info("tcp: new certificates served to new connections"),
            (error: unknown) =>
              next.logger.error(
                `tcp: cannot open a listener with the new certificates (${(error as Error).message}); the running ones stay`,
              ),
          );
        }
        this.writer.setHighWater(config.tcp.write_high_water_bytes);
        this.custom?.setLimits(config.custom.max_in_flight, config.limits.max_request_bytes);
        this.sweeper.configure(config.limits.connection_timeout_s, config.tcp.send_timeout_s);
      },
      abort: () => {},
    };
  }

  private readonly gauges = (): Record<string, number> => {
    let queuedBytes = 0;
    let pausedReads = 0;
    let outputFull = 0;
    let decoderBufferBytes = 0;
    for (const connection of this.pool.open) {
      queuedBytes += connection.queuedBytes;
      if (connection.isReadPaused) pausedReads++;
      if (connection.isOutputFull) outputFull++;
      if (connection.decoder !== null) decoderBufferBytes += connection.decoder.capacityBytes();
    }
    return {
      openConnections: this.pool.open.length,
      inFlight: this.custom?.inFlight() ?? 0,
      queuedBytes,
      peakQueuedBytes: this.writer.peakQueuedBytes,
      pausedReads,
      outputFull,
      decoderBufferBytes,
    };
  };

  /** Graceful stop, one I/O round after it began: closes the connections that are idle (the rest close as they become so). */
  private readonly closeIdle = (): void => {
    const open = this.pool.open;
    // Backwards: a close may release a state synchronously, swapping the last open one into an index already visited.
    for (let i = open.length - 1; i >= 0; i--) {
      const connection = open[i];
      if (connection !== undefined) this.afterActivity(connection);
    }
    this.checkDrained();
  };

  private checkDrained(): void {
    if (this.drained !== null && this.pool.open.length === 0 && (this.custom?.inFlight() ?? 0) === 0) {
      const resolve = this.drained;
      this.drained = null;
      resolve();
    }
  }

  private async stop(options: StopOptions): Promise<void> {
    if (this.isStopped) return;
    this.isStopped = true;
    this.sweeper.stop();
    const listener = this.listener!;
    if (options.graceful) {
      this.isDraining = true;
      if (this.rotation !== null) this.rotation.stopAccepting();
      else listener.stop(false);
      const finished = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      // Every connection closes once idle; a busy one becomes idle when its last answer is written (afterActivity).
      const open = this.pool.open;
      for (let i = open.length - 1; i >= 0; i--) open[i]!.closeWhenIdle = true;
      // The idle ones close a timer later, not now: requests a client sent before the drain began may still wait in
      // the kernel's receive buffer, and Bun polls sockets before it runs due timers, so they are read (and answered)
      // first. Closing at once would end such a connection with its requests unanswered.
      const idleCloser = setTimeout(this.closeIdle, 0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, options.timeoutMs);
      });
      await Promise.race([finished, timedOut]);
      clearTimeout(idleCloser);
      clearTimeout(timer);
      this.drained = null;
    }
    this.isDraining = true;
    if (!options.graceful) {
      if (this.rotation !== null) this.rotation.stopAccepting();
      else listener.stop(false);
    }
    // The deadline passed (or no grace was given). Every request read gets its frame (HPS/1: status 7 "server shutting
    // down" for what did not finish), so a client can tell an unfinished request from a lost answer; then each
    // connection ends with a FIN after its frames (lingerAfterDeadline).
    const open = this.pool.open;
    for (let i = open.length - 1; i >= 0; i--) {
      const connection = open[i];
      if (connection !== undefined) this.lingerAfterDeadline(connection);
    }
    // A graceful stop then waits until every connection has closed: its client has read the frames and the FIN and
    // closed its end. Frames merely handed to the kernel are not enough: an I/O thread is terminated once its stop
    // returns, which closes the sockets it still holds abruptly (a reset that discards what the client has not read
    // yet). The wait lasts at most tcp.send_timeout_s (the time a client that reads nothing may hold its output
    // anyway) and at most the grace itself, so a stop lasts at most twice server.shutdown_timeout_s; a stop without
    // grace does not wait.
    const lingerMs = options.graceful ? Math.min(this.context.config.tcp.send_timeout_s * 1000, options.timeoutMs) : 0;
    if (open.length > 0 && lingerMs > 0) {
      const closedAll = new Promise<void>((resolve) => {
        this.closedAll = resolve;
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, lingerMs);
      });
      await Promise.race([closedAll, timedOut]);
      clearTimeout(timer);
      this.closedAll = null;
    }
    for (let i = open.length - 1; i >= 0; i--) {
      const connection = open[i];
      if (connection === undefined || connection.isClosed) continue;
      connection.isClosed = true;
      if (connection.queuedBytes > 0) {
        // Frames the client did not read in time: a reset ends it (counted as a slow reader after a graceful wait).
        if (lingerMs > 0) this.context.stats.inc(Counter.disconnectedSlowReader);
        connection.socket?.terminate();
      } else {
        // Everything is with the kernel, which delivers it, then the FIN, after the close; the input was being read
        // and dropped, so there is none unread to turn the close into a reset.
        connection.socket?.end();
      }
    }
    if (this.rotation !== null) await this.rotation.close();
    else listener.stop(true);
    if (this.context.gauges.get("tcp") === this.gauges) this.context.gauges.delete("tcp");
  }

  /**
   * At the shutdown deadline: answers what the connection is owed (HPS/1, see CustomProtocol.answerAtDeadline), then
   * reads its input only to drop it, writes its output out and sends a FIN after it (afterActivity).
   */
  private lingerAfterDeadline(connection: ConnectionState): void {
    if (connection.isClosed) return;
    connection.isLingering = true;
    this.custom?.answerAtDeadline(connection);
    if (connection.isClosed) return;
    resumeReading(connection);
    this.afterActivity(connection);
  }
}
