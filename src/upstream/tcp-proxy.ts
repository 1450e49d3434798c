// The raw TCP proxy: one client connection relayed to one server of an upstream group, both directions with
// backpressure (a side that cannot take more pauses the other), half-close passed on, and an optional PROXY v2 header.
import type { Socket, SocketHandler } from "bun";
import type { UpstreamGroup } from "./group.ts";
import { proxyV2Header } from "./proxy-header.ts";
import type { UpstreamServer } from "./server.ts";
import { Field } from "./stats.ts";
import type { Timed } from "./timeouts.ts";

/** The client's socket as the session uses it (a Bun.listen socket). */
export interface ClientSocket {
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  /** Sends FIN after what was written (the client may still send). */
  shutdown(): void;
  end(): void;
  terminate(): void;
}

export interface TcpProxyOptions {
  /** The client as admitted (after a PROXY header from a trusted proxy): ip_hash's key and the PROXY header's source. */
  readonly clientAddress: string;
  readonly clientPort: number;
  /** Where the client reached hps (the PROXY header's destination). */
  readonly localAddress: string;
  readonly localPort: number;
  /** proxy.send_proxy_protocol: the server's first bytes are a PROXY v2 header naming the client. */
  readonly sendProxyHeader: boolean;
  /** Bytes moved either way (for the listener's idle timeout and byte counters). */
  readonly onBytes: (fromClient: number, toClient: number) => void;
  /** The session is over and both sockets are closed or closing (the listener releases the connection). */
  readonly onDone: () => void;
}

const EMPTY: readonly UpstreamServer[] = [];

export class TcpProxySession implements Timed {
  private readonly group: UpstreamGroup;
  private readonly client: ClientSocket;
  private readonly options: TcpProxyOptions;
  private upstream: Socket<TcpProxySession> | null = null;
  private server: UpstreamServer | null = null;
  /** The server whose connection count this session's open socket holds (until that socket closes). */
  private connectedServer: UpstreamServer | null = null;
  /** That socket: only its close concerns the session (not one that opened after its connect timeout). */
  private connectedSocket: Socket<TcpProxySession> | null = null;
  private statsSlot = -1;
  private exclude: readonly UpstreamServer[] = EMPTY;
  private retriesLeft: number;
  /** Client bytes the server's socket has not taken yet (before the connection opens, or after a short write). */
  private toServer: Uint8Array[] = [];
  /** Server bytes the client's socket has not taken yet. */
  private toClient: Uint8Array | null = null;
  private hasClientEnded = false;
  private hasServerEnded = false;
  private isDone = false;
  lastActivityMs = 0;
  timeoutMs = Number.POSITIVE_INFINITY;
  sweepIndex = -1;

  constructor(group: UpstreamGroup, client: ClientSocket, options: TcpProxyOptions) {
    this.group = group;
    this.client = client;
    this.options = options;
    this.retriesLeft = group.settings.retries;
  }

  /** Picks a server and connects; the client is paused until the connection opens. */
  start(): void {
    this.client.pause();
    this.attempt();
  }

  // Client events (called by the listener).

  fromClient(chunk: Uint8Array): void {
    if (this.isDone) return;
    this.touch();
    this.options.onBytes(chunk.byteLength, 0);
    this.group.stats.add(this.statsSlot, Field.bytesToServer, chunk.byteLength);
    const upstream = this.upstream;
    if (upstream === null || this.toServer.length > 0) {
      this.toServer.push(chunk);
      this.client.pause();
      return;
    }
    const written = upstream.write(chunk);
    if (written < chunk.byteLength) {
      if (written >= 0) this.toServer.push(chunk.subarray(written));
      this.client.pause();
    }
  }

  clientDrained(): void {
    if (this.isDone) return;
    const pending = this.toClient;
    if (pending === null) return;
    this.touch();
    const written = this.client.write(pending);
    if (written < 0) return;
    if (written < pending.byteLength) {
      this.toClient = pending.subarray(written);
      return;
    }
    this.toClient = null;
    if (this.hasServerEnded) this.client.shutdown();
    else this.upstream?.resume();
    this.finishIfBothEnded();
  }

  /** The client sent FIN: once its bytes are through, the server gets FIN too. */
  clientEnded(): void {
    if (this.isDone) return;
    this.hasClientEnded = true;
    if (this.upstream !== null && this.toServer.length === 0) this.upstream.shutdown();
    this.finishIfBothEnded();
  }

  /** The client's connection is gone: so is the server's. */
  clientClosed(): void {
    if (this.isDone) return;
    this.finish();
  }

  // Server events (see HANDLERS).

  fromServer(chunk: Uint8Array): void {
    if (this.isDone) return;
    this.touch();
    this.options.onBytes(0, chunk.byteLength);
    this.group.stats.add(this.statsSlot, Field.bytesFromServer, chunk.byteLength);
    if (this.toClient !== null) {
      this.toClient = concat(this.toClient, chunk);
      this.upstream?.pause();
      return;
    }
    const written = this.client.write(chunk);
    if (written < chunk.byteLength) {
      if (written >= 0) this.toClient = chunk.subarray(written);
      this.upstream?.pause();
    }
  }

  serverDrained(): void {
    if (this.isDone) return;
    const upstream = this.upstream!;
    this.touch();
    while (this.toServer.length > 0) {
      const pending = this.toServer[0]!;
      const written = upstream.write(pending);
      if (written < 0) return;
      if (written < pending.byteLength) {
        this.toServer[0] = pending.subarray(written);
        return;
      }
      this.toServer.shift();
    }
    if (this.hasClientEnded) upstream.shutdown();
    else this.client.resume();
    this.finishIfBothEnded();
  }

  serverEnded(): void {
    if (this.isDone) return;
    this.hasServerEnded = true;
    if (this.toClient === null) this.client.shutdown();
    this.finishIfBothEnded();
  }

  serverClosed(): void {
    if (this.isDone) return;
    // Closed with bytes still owed to the client: they are sent, then the client is told (FIN).
    if (this.toClient !== null) {
      this.hasServerEnded = true;
      this.upstream = null;
      return;
    }
    this.finish();
  }

  /** read_timeout_s passed with no byte either way. */
  onIdleTimeout(): void {
    this.finish();
  }

  private touch(): void {
    this.lastActivityMs = this.group.sweep.nowMs;
  }

  private attempt(): void {
    const group = this.group;
    const server = group.pick(this.options.clientAddress, this.exclude);
    if (server === null) {
      group.stats.add(this.exclude.length === 0 ? group.noServerSlot : this.statsSlot, Field.answered503, 1);
      this.finish();
      return;
    }
    const member = group.member(server);
    this.server = server;
    this.statsSlot = member.statsSlot;
    server.inFlight += 1;
    server.connections += 1;
    const timeoutMs = group.settings.connect_timeout_s * 1000;
    let isTimedOut = false;
    const timer = setTimeout(() => {
      isTimedOut = true;
      this.connectFailed(server, true);
    }, timeoutMs);
    Bun.connect<TcpProxySession>({
      hostname: server.host,
      port: server.port,
      data: this,
      allowHalfOpen: true,
      socket: HANDLERS,
    }).then(
      (socket) => {
        clearTimeout(timer);
        if (isTimedOut || this.isDone) {
          server.connections -= 1; // the socket's close is not the connected socket's, and changes nothing
          socket.terminate();
          return;
        }
        this.connected(socket);
      },
      () => {
        clearTimeout(timer);
        if (isTimedOut) {
          server.connections -= 1;
          return;
        }
        this.connectFailed(server, false);
      },
    );
  }

  private connected(socket: Socket<TcpProxySession>): void {
    this.upstream = socket;
    this.connectedServer = this.server;
    this.connectedSocket = socket;
    socket.setNoDelay(true);
    this.group.stats.add(this.statsSlot, Field.tcpConnections, 1);
    this.server!.health.succeeded(performance.now());
    const { sendProxyHeader, clientAddress, clientPort, localAddress, localPort } = this.options;
    if (sendProxyHeader) this.toServer.unshift(proxyV2Header(clientAddress, clientPort, localAddress, localPort));
    const readTimeoutSeconds = this.group.settings.read_timeout_s;
    if (readTimeoutSeconds > 0) {
      this.timeoutMs = readTimeoutSeconds * 1000;
      this.touch();
      this.group.sweep.track(this);
    }
    if (this.toServer.length > 0) this.serverDrained();
    else if (this.hasClientEnded) socket.shutdown();
    else this.client.resume();
  }

  private connectFailed(server: UpstreamServer, isTimeout: boolean): void {
    if (this.isDone) return;
    const group = this.group;
    if (!isTimeout) server.connections -= 1;
    group.stats.add(this.statsSlot, isTimeout ? Field.connectTimeouts : Field.connectFailures, 1);
    group.serverFailed(server, this.statsSlot);
    group.finished(server);
    this.server = null;
    if (this.retriesLeft > 0) {
      this.retriesLeft -= 1;
      group.stats.add(this.statsSlot, Field.retries, 1);
      this.exclude = [...this.exclude, server];
      this.attempt();
      return;
    }
    group.stats.add(this.statsSlot, Field.answered502, 1);
    this.finish();
  }

  private finishIfBothEnded(): void {
    if (this.hasClientEnded && this.hasServerEnded && this.toClient === null && this.toServer.length === 0) {
      this.finish();
    }
  }

  /** Ends the session: both connections closed (after the FINs already sent), the server's slot freed. */
  private finish(): void {
    if (this.isDone) return;
    this.isDone = true;
    this.group.sweep.untrack(this);
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.end();
    this.client.end();
    if (this.server !== null) this.group.finished(this.server);
    this.server = null;
    this.options.onDone();
  }

  /** The server's socket closed: its connection no longer counts; the session ends unless bytes are still owed. */
  serverSocketClosed(socket: Socket<TcpProxySession>): void {
    if (socket !== this.connectedSocket) return; // a late connection, terminated as it opened (see attempt)
    this.connectedSocket = null;
    const server = this.connectedServer;
    this.connectedServer = null;
    if (server !== null) server.connections -= 1;
    this.serverClosed();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

const HANDLERS: SocketHandler<TcpProxySession> = {
  binaryType: "uint8array",
  data: (socket, chunk) => socket.data.fromServer(chunk),
  drain: (socket) => socket.data.serverDrained(),
  end: (socket) => socket.data.serverEnded(),
  close: (socket) => socket.data.serverSocketClosed(socket),
  error: () => {}, // the close that follows ends the session
  connectError: () => {}, // the connect promise rejects; attempt() handles it
};
