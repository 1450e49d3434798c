// Test helpers for upstreams: group settings with test defaults, Bun backends, and a bare proxy front.
import type { Server, Socket } from "bun";
import { Logger } from "../../src/log.ts";
import type { UpstreamGroup } from "../../src/upstream/group.ts";
import { proxyExchange } from "../../src/upstream/http-proxy.ts";
import { UpstreamStats } from "../../src/upstream/stats.ts";
import { TcpProxySession } from "../../src/upstream/tcp-proxy.ts";
import { Upstreams } from "../../src/upstream/upstreams.ts";
import { isWebSocketUpgrade, WEBSOCKET_RELAY, WebSocketRelay } from "../../src/upstream/websocket.ts";
import type { ServerSettings, UpstreamSettings } from "../../src/upstream/types.ts";

/** Group settings for tests: the schema's defaults except shorter timeouts; servers as "host:port" or objects. */
export function upstreamSettings(
  servers: readonly (string | Partial<ServerSettings>)[],
  overrides: Partial<UpstreamSettings> = {},
): UpstreamSettings {
  return {
    name: "app",
    strategy: "round_robin",
    keepalive_connections: 64,
    keepalive_timeout_s: 60,
    connect_timeout_s: 2,
    read_timeout_s: 30,
    retries: 1,
    max_fails: 3,
    fail_timeout_s: 10,
    health_check_path: "",
    health_check_interval_s: 5,
    ...overrides,
    servers: servers.map((server) =>
      typeof server === "string"
        ? { address: server, weight: 1, max_connections: 0 }
        : { address: "", weight: 1, max_connections: 0, ...server },
    ),
  };
}

/** A Bun.serve backend on 127.0.0.1:0 that counts the TCP connections it saw (by peer port). */
export interface Backend {
  readonly server: Server<undefined>;
  readonly address: string;
  readonly port: number;
  /** Distinct client ports seen: connections the proxy opened. */
  readonly peerPorts: Set<number>;
  requests: number;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function startBackend(
  fetch: (request: Request, server: Server<undefined>) => Response | Promise<Response>,
  options: { port?: number; idleTimeout?: number } = {},
): Backend {
  const peerPorts = new Set<number>();
  const backend: Backend = {
    server: null as unknown as Server<undefined>,
    address: "",
    port: 0,
    peerPorts,
    requests: 0,
    stop: async () => void (await backend.server.stop(true)),
    [Symbol.asyncDispose]: () => backend.stop(),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    idleTimeout: options.idleTimeout ?? 10,
    fetch(request, srv) {
      backend.requests += 1;
      const peer = srv.requestIP(request);
      if (peer !== null) peerPorts.add(peer.port);
      return fetch(request, srv);
    },
  });
  Object.assign(backend, { server, address: `127.0.0.1:${server.port}`, port: server.port });
  return backend;
}

/** A minimal front: every request is proxied to `group` (the real routes and edge come with the http listener). */
export interface ProxyFront {
  readonly upstreams: Upstreams;
  readonly group: UpstreamGroup;
  readonly stats: UpstreamStats;
  readonly base: string;
  readonly port: number;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function startProxyFront(
  settings: UpstreamSettings,
  maxRequestBytes = 1024 * 1024,
  logger: Logger = Logger.silent(),
): ProxyFront {
  const stats = UpstreamStats.create();
  const upstreams = new Upstreams([settings], { stats, logger, publishesGauges: false });
  const group = upstreams.group(settings.name)!;
  const server = Bun.serve<WebSocketRelay>({
    hostname: "127.0.0.1",
    port: 0,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(request, srv) {
      const url = request.url;
      const target = url.slice(url.indexOf("/", 8));
      const peer = srv.requestIP(request)?.address ?? "127.0.0.1";
      const client = {
        peerAddress: peer,
        isTrustedPeer: false,
        scheme: "http",
        clientAddress: request.headers.get("x-test-client") ?? peer,
        maxRequestBytes,
      };
      if (isWebSocketUpgrade(request)) {
        const relay = await WebSocketRelay.open(group, request, target, client, client.clientAddress);
        if (typeof relay === "number") return new Response(null, { status: relay });
        const headers = relay.protocol === "" ? undefined : { "Sec-WebSocket-Protocol": relay.protocol };
        if (srv.upgrade(request, { data: relay, headers })) return undefined as unknown as Response;
        relay.abandon();
        return new Response(null, { status: 400 });
      }
      return proxyExchange(group, request, target, client, performance.now()).run();
    },
    websocket: WEBSOCKET_RELAY,
  });
  const front: ProxyFront = {
    upstreams,
    group,
    stats,
    base: `http://127.0.0.1:${server.port}`,
    port: server.port as number,
    stop: async () => {
      upstreams.stop();
      await server.stop(true);
    },
    [Symbol.asyncDispose]: () => front.stop(),
  };
  return front;
}

/** A scripted raw-TCP backend: `onRequest` gets each request head (and the socket) and writes whatever it likes. */
export interface RawBackend {
  readonly address: string;
  readonly port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Request heads received, in order. */
  readonly heads: string[];
  stop(): void;
  [Symbol.dispose](): void;
}

export function startRawBackend(
  onRequest: (head: string, socket: import("bun").Socket<{ buffer: string; served: number }>, served: number) => void,
): RawBackend {
  const backend: RawBackend = {
    address: "",
    port: 0,
    connections: 0,
    heads: [],
    stop: () => listener.stop(true),
    [Symbol.dispose]: () => backend.stop(),
  };
  const listener = Bun.listen<{ buffer: string; served: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        backend.connections += 1;
        socket.data = { buffer: "", served: 0 };
      },
      data(socket, chunk) {
        socket.data.buffer += Buffer.from(chunk).toString("latin1");
        for (;;) {
          const end = socket.data.buffer.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = socket.data.buffer.slice(0, end + 4);
          socket.data.buffer = socket.data.buffer.slice(end + 4);
          backend.heads.push(head);
          onRequest(head, socket, socket.data.served++);
        }
      },
    },
  });
  Object.assign(backend, { address: `127.0.0.1:${listener.port}`, port: listener.port });
  return backend;
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
export function closedPort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** A minimal raw-TCP front: every connection is relayed to `settings`' group by a TcpProxySession. */
export interface TcpProxyFront {
  readonly upstreams: Upstreams;
  readonly group: UpstreamGroup;
  readonly stats: UpstreamStats;
  readonly port: number;
  /** Sessions still open. */
  sessions(): number;
  stop(): void;
  [Symbol.dispose](): void;
}

export function startTcpProxyFront(settings: UpstreamSettings, sendProxyHeader = false): TcpProxyFront {
  const stats = UpstreamStats.create();
  const upstreams = new Upstreams([settings], { stats, logger: Logger.silent(), publishesGauges: false });
  const group = upstreams.group(settings.name)!;
  let open = 0;
  const listener = Bun.listen<TcpProxySession | null>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    data: null,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        open += 1;
        const session = new TcpProxySession(group, socket, {
          clientAddress: socket.remoteAddress,
          clientPort: socket.remotePort,
          localAddress: socket.localAddress,
          localPort: socket.localPort,
          sendProxyHeader,
          onBytes: () => {},
          onDone: () => {
            open -= 1;
          },
        });
        socket.data = session;
        session.start();
      },
      data: (socket, chunk) => socket.data?.fromClient(chunk),
      drain: (socket) => socket.data?.clientDrained(),
      end: (socket) => socket.data?.clientEnded(),
      close: (socket) => socket.data?.clientClosed(),
    },
  });
  const front: TcpProxyFront = {
    upstreams,
    group,
    stats,
    port: listener.port,
    sessions: () => open,
    stop: () => {
      upstreams.stop();
      listener.stop(true);
    },
    [Symbol.dispose]: () => front.stop(),
  };
  return front;
}

/** An echo server that resends what it could not write on drain and, when the client ends, ends after flushing. */
export function startEchoBackend(onConnection: (first: Uint8Array) => void = () => {}) {
  type State = { pending: Uint8Array[]; ended: boolean; first: boolean };
  const stats = { connections: 0 };
  const flush = (socket: Socket<State>) => {
    const state = socket.data;
    while (state.pending.length > 0) {
      const chunk = state.pending[0]!;
      const written = socket.write(chunk);
      if (written < chunk.byteLength) {
        state.pending[0] = chunk.subarray(Math.max(0, written));
        return;
      }
      state.pending.shift();
    }
    if (state.ended) socket.end();
  };
  const listener = Bun.listen<State>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        stats.connections += 1;
        socket.data = { pending: [], ended: false, first: true };
      },
      data(socket, chunk) {
        if (socket.data.first) {
          socket.data.first = false;
          onConnection(chunk.slice());
        }
        socket.data.pending.push(chunk.slice());
        flush(socket);
      },
      drain: flush,
      end(socket) {
        socket.data.ended = true;
        flush(socket);
      },
    },
  });
  return { listener, address: `127.0.0.1:${listener.port}`, stats, [Symbol.dispose]: () => listener.stop(true) };
}

/** Connects, writes `payload` (then FIN when `end`), and collects the reply until the other side closes. */
export async function tcpExchange(port: number, payload: Uint8Array, end = true): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let done: () => void = () => {};
  const closed = new Promise<void>((resolve) => (done = resolve));
  let offset = 0;
  const pump = (socket: Socket<undefined>) => {
    while (offset < payload.byteLength) {
      const written = socket.write(payload.subarray(offset, offset + 256 * 1024));
      if (written <= 0) return;
      offset += written;
    }
    if (end) socket.shutdown();
  };
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      binaryType: "uint8array",
      open: pump,
      drain: pump,
      data: (_socket, chunk) => void chunks.push(chunk.slice()),
      end: (socket) => void socket.end(),
      close: () => done(),
    },
  });
  await closed;
  return Buffer.concat(chunks);
}

/** nginx as a backend (Debian package nginx): files under `root`, and `location = /hello` answering "hello". */
export interface NginxBackend {
  readonly address: string;
  readonly port: number;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startNginxBackend(root: string, prefix: string): Promise<NginxBackend> {
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const port = closedPort();
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `  ${kind}_temp_path ${join(prefix, kind)};`)
    .join("\n");
  writeFileSync(
    join(prefix, "nginx.conf"),
    `${user}worker_processes 1;
pid ${join(prefix, "nginx.pid")};
error_log ${join(prefix, "logs/error.log")} warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
${temp}
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location = /hello { return 200 "hello from nginx"; }
  }
}
`,
  );
  const proc = Bun.spawn(["/usr/sbin/nginx", "-p", prefix, "-c", join(prefix, "nginx.conf"), "-g", "daemon off;"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ready = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (socket) => {
        socket.end();
        return true;
      },
      () => false,
    );
    if (ready) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill();
      throw new Error(`nginx did not start on port ${port}: ${await new Response(proc.stderr).text()}`);
    }
    await Bun.sleep(20);
  }
  const backend: NginxBackend = {
    address: `127.0.0.1:${port}`,
    port,
    stop: async () => {
      proc.kill("SIGQUIT");
      await proc.exited;
    },
    [Symbol.asyncDispose]: () => backend.stop(),
  };
  return backend;
}

/**
 * A listener whose connects complete late: python3 listens with a backlog of 0 and fills the accept queue, so the
 * kernel drops a new connection's SYN and the client retransmits it (after about 1 s). `makeRoom()` accepts
 * everything from then on, so that retransmission succeeds. (Bun.listen accepts at once; only a listener that does
 * not can delay a connect on loopback.)
 */
export interface SlowAcceptServer {
  readonly address: string;
  makeRoom(): void;
  [Symbol.dispose](): void;
}

const SLOW_ACCEPT = `
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(0)
port = server.getsockname()[1]
fillers = []
for _ in range(2):
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(("127.0.0.1", port))
    fillers.append(filler)
print(port, flush=True)
sys.stdin.readline()
accepted = []
while True:
    accepted.append(server.accept()[0])
    print("accepted", flush=True)
`;

export async function startSlowAcceptServer(): Promise<SlowAcceptServer> {
  const child = Bun.spawn(["python3", "-I", "-S", "-c", SLOW_ACCEPT], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const readLine = async (): Promise<string> => {
    for (;;) {
      const newline = text.indexOf("\n");
      if (newline >= 0) {
        const line = text.slice(0, newline);
        text = text.slice(newline + 1);
        return line;
      }
      const chunk = await reader.read();
      if (chunk.done) throw new Error("the slow-accept listener (python3) exited");
      text += decoder.decode(chunk.value);
    }
  };
  const port = Number(await readLine());
  return {
    address: `127.0.0.1:${port}`,
    makeRoom: () => {
      child.stdin.write("go\n");
      child.stdin.flush();
    },
    [Symbol.dispose]: () => child.kill(),
  };
}
