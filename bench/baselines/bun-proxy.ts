// Baseline: the least a Bun reverse proxy does per request — Bun.serve, a pool of keep-alive Bun.connect connections,
// the request line and Host written, a response with Content-Length read and passed back. No X-Forwarded-*, no
// hop-by-hop filtering, no streaming, no retries, no limits: the ceiling hps's proxy adds its features on top of.
// Usage: bun bench/baselines/bun-proxy.ts --port 9000 --upstream 127.0.0.1:9001   (prints the port)
import type { Socket } from "bun";

const argument = (name: string, fallback: string) => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1]! : fallback;
};
const port = Number(argument("--port", "0"));
const [upstreamHost, upstreamPort] = argument("--upstream", "127.0.0.1:9001").split(":") as [string, string];

/** One pooled connection: the response being read and who waits for it. */
interface Conn {
  socket: Socket<Conn>;
  buffered: Buffer | null;
  resolve: ((response: Response) => void) | null;
}

const idle: Conn[] = [];

function onData(conn: Conn, chunk: Buffer): void {
  const bytes = conn.buffered === null ? chunk : Buffer.concat([conn.buffered, chunk]);
  const text = bytes.toString("latin1");
  const headEnd = text.indexOf("\r\n\r\n");
  if (headEnd < 0) {
    conn.buffered = bytes;
    return;
  }
  const lengthAt = text.toLowerCase().indexOf("content-length:");
  const length = lengthAt < 0 ? 0 : Number.parseInt(text.slice(lengthAt + 15, text.indexOf("\r\n", lengthAt)), 10);
  if (bytes.length < headEnd + 4 + length) {
    conn.buffered = bytes;
    return;
  }
  conn.buffered = null;
  const status = Number(text.slice(9, 12));
  const resolve = conn.resolve!;
  conn.resolve = null;
  idle.push(conn);
  resolve(new Response(bytes.subarray(headEnd + 4, headEnd + 4 + length), { status }));
}

/** The backend closed a connection (its keep-alive timeout while idle): it leaves the pool; a waiting request gets 502. */
function onClose(conn: Conn): void {
  const at = idle.indexOf(conn);
  if (at >= 0) idle.splice(at, 1);
  const resolve = conn.resolve;
  conn.resolve = null;
  resolve?.(new Response("upstream closed", { status: 502 }));
}

async function connect(): Promise<Conn> {
  const conn = { socket: null, buffered: null, resolve: null } as unknown as Conn;
  conn.socket = await Bun.connect<Conn>({
    hostname: upstreamHost,
    port: Number(upstreamPort),
    data: conn,
    socket: { data: (socket, chunk) => onData(socket.data, chunk), close: (socket) => onClose(socket.data) },
  });
  conn.socket.setNoDelay(true);
  return conn;
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  development: false,
  async fetch(request) {
    const conn = idle.pop() ?? (await connect());
    const url = request.url;
    const target = url.slice(url.indexOf("/", 8));
    return new Promise<Response>((resolve) => {
      conn.resolve = resolve;
      conn.socket.write(`GET ${target} HTTP/1.1\r\nHost: ${upstreamHost}\r\n\r\n`);
    });
  },
});
console.log(server.port);
