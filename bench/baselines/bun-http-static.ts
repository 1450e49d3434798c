// Baseline: raw Bun.serve with a static `routes` Response per file of the root (Bun's fast path, no per-request JS).
// Usage: bun bench/baselines/bun-http-static.ts --port 9000 --root ./public [--cert C.pem --key K.pem [--http2]]
// (prints the port). With --cert and --key it serves HTTPS; --http2 offers HTTP/2 by ALPN too.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const argument = (name: string, fallback: string) => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1]! : fallback;
};
const port = Number(argument("--port", "0"));
const root = argument("--root", "./public");
const certFile = argument("--cert", "");
const keyFile = argument("--key", "");
const http2 = process.argv.includes("--http2");
/** Files larger than this are left out (a static route holds the whole body in memory). */
const MAX_FILE_BYTES = 512 * 1024 * 1024;

const routes: Record<string, Response> = {};
for (const name of readdirSync(root)) {
  const path = join(root, name);
  const stat = statSync(path);
  if (!stat.isFile() || stat.size > MAX_FILE_BYTES) continue;
  routes[`/${name}`] = new Response(readFileSync(path), { headers: { "Content-Type": "application/octet-stream" } });
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  development: false,
  ...(certFile === "" ? {} : { tls: { cert: Bun.file(certFile), key: Bun.file(keyFile) } }),
  http2,
  routes,
  fetch: () => new Response("Not Found", { status: 404 }),
});
console.log(server.port);
