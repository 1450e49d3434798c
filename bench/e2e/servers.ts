// The servers an end-to-end benchmark compares: hps in each protocol and the baselines (raw Bun, nginx), with how to start each.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePorts, startChild, type Child } from "./process.ts";
import { PROXY_SERVERS, type ProxyBackends, type ProxyServerName } from "./proxy-servers.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const READY_TIMEOUT_MS = 15_000;

/** Names of every server a case can measure. */
export type ServerName =
  | "hps-http"
  | "hps-http-static-routes"
  | "hps-http-rate-limited"
  | "hps-http-fleet-limited"
  | "hps-echo"
  | "hps-echo-hwm-64k"
  | "hps-echo-hwm-256k"
  | "hps-custom"
  | "hps-custom-inline"
  | "bun-http-static"
  | "bun-http-file"
  | "bun-http-clone"
  | "bun-echo"
  | "nginx"
  | "nginx-nopush-off"
  | "nginx-sendfile-off"
  | "hps-https"
  | "hps-https-static-routes"
  | "hps-https-h3"
  | "hps-https-h3-tcp"
  | "bun-https-static"
  | "bun-https-clone"
  | "nginx-https"
  | ProxyServerName;

export interface ServerSpec {
  name: ServerName;
  /** What the server is, for the table's notes. */
  description: string;
  /** null when the server cannot run here (a missing baseline file); the reason says why. */
  unavailable: string | null;
  start(env: BenchEnv, port: number): Promise<Child>;
}

/** Where a run keeps its files, and the cores it pins to. */
export interface BenchEnv {
  tempDir: string;
  /** The directory of test files every HTTP server serves. */
  wwwDir: string;
  serverCore: number | null;
  /** Ports for the admin listeners of hps instances, taken in order. */
  adminPorts: number[];
  /** Core for helpers a server needs besides itself (the fleet's redis-server): the load generator's. */
  helperCore: number | null;
  /** The certificate every TLS server uses (made at run time, see makeBenchCertificate); null before it is made. */
  tls: { certFile: string; keyFile: string } | null;
  /** The backends the proxy cases send to (bench/e2e/proxy-servers.ts); null when no proxy case runs. */
  backends: ProxyBackends | null;
  /** The checkout whose src/main.ts the hps servers run (default: this one), for A/B runs of two checkouts. */
  repo?: string;
  /** --set arguments added to every hps server's own (bench/e2e/cpu-per-request.ts --set). */
  hpsSets?: readonly string[];
}

/**
 * Starts a redis-server (Debian's package) for a fleet benchmark on a free loopback port, pinned to the helpers'
 * core (its work is not the server's); stopped with every child. Resolves with its URL and process.
 */
export async function startBenchRedis(env: BenchEnv, name: string): Promise<{ url: string; child: Child }> {
  const [port] = freePorts(1);
  const child = await startChild({
    name,
    argv: ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    core: env.helperCore,
    readyPort: port!,
    readyTimeoutMs: READY_TIMEOUT_MS,
    logPath: join(env.tempDir, `${name}.log`),
  });
  return { url: `redis://127.0.0.1:${port}`, child };
}

/**
 * A self-signed EC P-256 certificate for 127.0.0.1 and localhost (the curve and kind a real site uses most), made
 * with openssl in the run's temporary directory.
 */
export async function makeBenchCertificate(tempDir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(tempDir, "bench.pem");
  const keyFile = join(tempDir, "bench.key");
  const argv = [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ];
  const proc = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe" });
  if ((await proc.exited) !== 0)
    throw new Error(`openssl could not make the benchmark certificate: ${await new Response(proc.stderr).text()}`);
  chmodSync(keyFile, 0o644); // nginx workers run as another user
  return { certFile, keyFile };
}

/** The servers that need the benchmark certificate. */
export const TLS_SERVERS: ReadonlySet<ServerName> = new Set([
  "hps-https",
  "hps-https-static-routes",
  "hps-https-h3",
  "hps-https-h3-tcp",
  "bun-https-static",
  "bun-https-clone",
  "nginx-https",
]);

/** --set arguments that turn TLS on with the benchmark certificate. */
function tlsSets(env: BenchEnv): string[] {
  if (env.tls === null) throw new Error("the benchmark certificate was not made");
  return ["tls.enabled=true", `tls.cert_file=${env.tls.certFile}`, `tls.key_file=${env.tls.keyFile}`];
}

/** Test files every HTTP server serves: name and size. */
export const HTTP_FILES = [
  { name: "1k.bin", bytes: 1024 },
  { name: "64k.bin", bytes: 64 * 1024 },
  { name: "256m.bin", bytes: 256 * 1024 * 1024 },
] as const;

/** hps pool threads in the custom benchmark: the server has one core. */
export const BENCH_POOL_THREADS = 1;

/** Writes the test files (a fixed pseudo-random pattern: incompressible, identical for every server). */
export async function writeHttpFiles(
  wwwDir: string,
  files: readonly { name: string; bytes: number }[] = HTTP_FILES,
): Promise<void> {
  mkdirSync(wwwDir, { recursive: true, mode: 0o755 });
  const block = new Uint8Array(1024 * 1024);
  let state = 0x12345678;
  for (let i = 0; i < block.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    block[i] = state >>> 24;
  }
  for (const file of files) {
    const path = join(wwwDir, file.name);
    if (file.bytes <= block.length) {
      writeFileSync(path, block.subarray(0, file.bytes), { mode: 0o644 });
      continue;
    }
    const writer = Bun.file(path).writer();
    for (let written = 0; written < file.bytes; written += block.length) {
      writer.write(block);
      await writer.flush();
    }
    await writer.end();
  }
}

function hpsArgv(
  env: BenchEnv,
  port: number,
  protocol: "http" | "echo" | "custom",
  script = "src/main.ts",
  extraSets: readonly string[] = [],
): string[] {
  const adminPort = env.adminPorts.shift();
  if (adminPort === undefined) throw new Error("out of admin ports");
  const emptyConfig = join(env.tempDir, "empty.toml");
  if (!existsSync(emptyConfig)) writeFileSync(emptyConfig, "# defaults: the benchmark sets what it needs with --set\n");
  const sets = [
    `server.protocol=${protocol}`,
    "server.bind=127.0.0.1",
    `server.port=${port}`,
    `admin.port=${adminPort}`,
    "log.level=warn",
    "stats.interval_s=0",
    // nginx runs with access_log off; the same work for both
    "log.access_log=false",
    `http.root=${env.wwwDir}`,
    `pool.threads=${BENCH_POOL_THREADS}`,
    ...extraSets,
    ...(env.hpsSets ?? []),
  ];
  return ["bun", join(env.repo ?? REPO, script), "--config", emptyConfig, ...sets.flatMap((set) => ["--set", set])];
}

function hps(
  name: ServerName,
  protocol: "http" | "echo" | "custom",
  description: string,
  script?: string,
  extraSets: readonly string[] | ((env: BenchEnv) => string[]) = [],
): ServerSpec {
  return {
    name,
    description,
    unavailable: null,
    start: (env, port) =>
      startChild({
        name,
        argv: hpsArgv(env, port, protocol, script, typeof extraSets === "function" ? extraSets(env) : extraSets),
        core: env.serverCore,
        readyPort: port,
        readyTimeoutMs: READY_TIMEOUT_MS,
        cwd: env.repo ?? REPO,
        logPath: join(env.tempDir, `${name}.log`),
      }),
  };
}

/** A raw-Bun baseline script from bench/baselines/, started with `--port N --root DIR` (HTTP) or `--port N` (echo). */
function bunBaseline(
  name: ServerName,
  file: string,
  description: string,
  withRoot: boolean,
  withTls = false,
): ServerSpec {
  const path = join(REPO, "bench/baselines", file);
  return {
    name,
    description,
    unavailable: existsSync(path) ? null : `bench/baselines/${file} is missing`,
    start: (env, port) =>
      startChild({
        name,
        argv: [
          "bun",
          path,
          "--port",
          String(port),
          ...(withRoot ? ["--root", env.wwwDir] : []),
          ...(withTls && env.tls !== null ? ["--cert", env.tls.certFile, "--key", env.tls.keyFile, "--http2"] : []),
        ],
        core: env.serverCore,
        readyPort: port,
        readyTimeoutMs: READY_TIMEOUT_MS,
        cwd: REPO,
        logPath: join(env.tempDir, `${name}.log`),
      }),
  };
}

export const NGINX_BIN = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";

/** nginx as BENCHMARKS.md configures it, with `sendfile`/`tcp_nopush` as given; with `tls`, `listen … ssl http2`. */
function nginx(
  name: ServerName,
  sendfile: boolean,
  tcpNopush: boolean,
  description: string,
  withTls = false,
): ServerSpec {
  return {
    name,
    description,
    unavailable: null,
    start: (env, port) => {
      const prefix = join(env.tempDir, name);
      mkdirSync(join(prefix, "logs"), { recursive: true });
      const conf = join(prefix, "nginx.conf");
      writeFileSync(conf, nginxConfig(prefix, env.wwwDir, port, sendfile, tcpNopush, withTls ? env.tls : null));
      return startChild({
        name,
        argv: [NGINX_BIN, "-p", prefix, "-c", conf, "-g", "daemon off;"],
        core: env.serverCore,
        readyPort: port,
        readyTimeoutMs: READY_TIMEOUT_MS,
        logPath: join(env.tempDir, `${name}.log`),
      });
    },
  };
}

export function nginxConfig(
  prefix: string,
  root: string,
  port: number,
  sendfile: boolean,
  tcpNopush: boolean,
  tls: { certFile: string; keyFile: string } | null = null,
): string {
  // nginx 1.22 syntax. keepalive_requests (HTTP/1.1 and HTTP/2 alike) lifted from 1000: hps sets no such limit, and
  // h2load does not reconnect a connection nginx ends, nor does reconnecting cost the same as not.
  const listen =
    tls === null
      ? `listen 127.0.0.1:${port};`
      : `listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${tls.certFile};
    ssl_certificate_key ${tls.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000000;`;
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  return `${user}worker_processes 1;
pid ${join(prefix, "nginx.pid")};
error_log ${join(prefix, "logs/error.log")} warn;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile ${sendfile ? "on" : "off"};
  tcp_nopush ${tcpNopush ? "on" : "off"};
  open_file_cache max=1000;
  default_type application/octet-stream;
  client_body_temp_path ${join(prefix, "client_body")};
  proxy_temp_path ${join(prefix, "proxy")};
  fastcgi_temp_path ${join(prefix, "fastcgi")};
  uwsgi_temp_path ${join(prefix, "uwsgi")};
  scgi_temp_path ${join(prefix, "scgi")};
  server {
    ${listen}
    root ${root};
  }
}
`;
}

/** A proxy of bench/e2e/proxy-servers.ts, started once the run has started the backends. */
function proxy(name: ProxyServerName, unavailable: string | null = null): ServerSpec {
  const spec = PROXY_SERVERS[name];
  return {
    name,
    description: spec.description,
    unavailable,
    start: (env, port) => {
      if (env.backends === null) throw new Error(`${name} needs the proxy backends, which this run did not start`);
      return spec.start({ ...env, backends: env.backends }, port);
    },
  };
}

export const SERVERS: Record<ServerName, ServerSpec> = {
  "hps-echo-hwm-64k": hps(
    "hps-echo-hwm-64k",
    "echo",
    "hps, protocol echo, tcp.write_high_water_bytes = 64 KiB",
    undefined,
    ["tcp.write_high_water_bytes=65536"],
  ),
  "hps-echo-hwm-256k": hps(
    "hps-echo-hwm-256k",
    "echo",
    "hps, protocol echo, tcp.write_high_water_bytes = 256 KiB",
    undefined,
    ["tcp.write_high_water_bytes=262144"],
  ),
  "hps-http": hps("hps-http", "http", "hps, protocol http (bun run server), access log off"),
  "hps-http-static-routes": hps(
    "hps-http-static-routes",
    "http",
    "hps, protocol http with http.static_routes = true (cached files as Bun static routes, no per-request JS; http.compress = false, access log off)",
    undefined,
    ["http.static_routes=true", "http.compress=false"],
  ),
  "hps-http-rate-limited": hps(
    "hps-http-rate-limited",
    "http",
    "hps, protocol http with rate_limit.enabled = true at 1e9 requests per second per address (never reached), access log off",
    undefined,
    ["rate_limit.enabled=true", "rate_limit.requests=1000000000", "rate_limit.window_s=1"],
  ),
  "hps-http-fleet-limited": {
    name: "hps-http-fleet-limited",
    description:
      "hps as hps-http-rate-limited, with the limit shared through Redis (fleet.redis_url; redis-server on the load generator's core)",
    unavailable:
      Bun.which("redis-server") === null ? "redis-server is not installed (Debian package redis-server)" : null,
    async start(env, port) {
      const redis = await startBenchRedis(env, "hps-http-fleet-limited-redis");
      return await hps("hps-http-fleet-limited", "http", "", undefined, [
        "rate_limit.enabled=true",
        "rate_limit.requests=1000000000",
        "rate_limit.window_s=1",
        `fleet.redis_url=${redis.url}`,
      ]).start(env, port);
    },
  },
  "hps-echo": hps("hps-echo", "echo", "hps, protocol echo"),
  "hps-custom": hps(
    "hps-custom",
    "custom",
    `hps, protocol custom, HASH on the pool (pool.threads = ${BENCH_POOL_THREADS})`,
  ),
  "hps-custom-inline": hps(
    "hps-custom-inline",
    "custom",
    "hps custom listener with HASH inline on the I/O thread (bench/baselines/hps-custom-inline.ts)",
    "bench/baselines/hps-custom-inline.ts",
  ),
  "bun-http-static": bunBaseline(
    "bun-http-static",
    "bun-http-static.ts",
    "raw Bun.serve, files as prebuilt static routes",
    true,
  ),
  "bun-http-file": bunBaseline(
    "bun-http-file",
    "bun-http-file.ts",
    "raw Bun.serve, fetch → new Response(Bun.file(path))",
    true,
  ),
  "bun-http-clone": bunBaseline(
    "bun-http-clone",
    "bun-http-clone.ts",
    "raw Bun.serve, a route handler per file returning a clone of a ready Response with hps's headers (the per-request-JS ceiling)",
    true,
  ),
  "bun-echo": bunBaseline("bun-echo", "bun-echo.ts", "raw Bun.listen echo (bench/baselines/bun-echo.ts)", false),
  nginx: nginx("nginx", true, true, "nginx, worker_processes 1, sendfile on, tcp_nopush on, open_file_cache"),
  "nginx-https": nginx(
    "nginx-https",
    true,
    true,
    "nginx as above with `listen … ssl http2`, ssl_protocols TLSv1.2 TLSv1.3, the same certificate, keepalive_requests unlimited",
    true,
  ),
  "hps-https": hps(
    "hps-https",
    "http",
    "hps, protocol http over TLS with HTTP/2 (ordinary request path: conditionals, ranges, stats; access log off)",
    undefined,
    (env) => tlsSets(env),
  ),
  "hps-https-static-routes": hps(
    "hps-https-static-routes",
    "http",
    "hps over TLS with HTTP/2 and http.static_routes = true (cached files as Bun static routes, no per-request JS; http.compress = false, access log off)",
    undefined,
    (env) => [...tlsSets(env), "http.static_routes=true", "http.compress=false"],
  ),
  "hps-https-h3": hps(
    "hps-https-h3",
    "http",
    "hps over TLS with http.http3 = true, driven over HTTP/3 by Bun's fetch",
    undefined,
    (env) => [...tlsSets(env), "http.http3=true"],
  ),
  "hps-https-h3-tcp": hps(
    "hps-https-h3-tcp",
    "http",
    "the same hps (http.http3 = true), driven over HTTP/2 by Bun's fetch",
    undefined,
    (env) => [...tlsSets(env), "http.http3=true"],
  ),
  "bun-https-static": bunBaseline(
    "bun-https-static",
    "bun-http-static.ts",
    "raw Bun.serve over TLS with HTTP/2, files as prebuilt static routes",
    true,
    true,
  ),
  "bun-https-clone": bunBaseline(
    "bun-https-clone",
    "bun-http-clone.ts",
    "raw Bun.serve over TLS with HTTP/2, a route handler per file returning a clone of a ready Response (the per-request-JS ceiling)",
    true,
    true,
  ),
  "nginx-nopush-off": nginx("nginx-nopush-off", true, false, "nginx as above with tcp_nopush off"),
  "hps-proxy": proxy("hps-proxy"),
  "nginx-proxy": proxy("nginx-proxy"),
  "nginx-proxy-unbuffered": proxy("nginx-proxy-unbuffered"),
  "bun-proxy": proxy("bun-proxy"),
  "hps-tcp-proxy": proxy("hps-tcp-proxy"),
  "nginx-stream": proxy(
    "nginx-stream",
    existsSync("/usr/lib/nginx/modules/ngx_stream_module.so")
      ? null
      : "nginx's stream module is missing (Debian package libnginx-mod-stream)",
  ),
  "nginx-sendfile-off": nginx(
    "nginx-sendfile-off",
    false,
    true,
    "nginx as above with sendfile off (tcp_nopush has no effect without sendfile)",
  ),
};
