// Reverse-proxy comparisons: hps and nginx as proxies in front of the same backends (an nginx HTTP backend answering
// "hello" and a 64 MiB file, a raw Bun echo for TCP), each proxy pinned like every server, the backends on the load
// generator's core so the proxy's core does nothing else.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startChild, type Child } from "./process.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const READY_TIMEOUT_MS = 15_000;
const NGINX_BIN = "/usr/sbin/nginx";
const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
/** The large response of the proxy throughput case. */
export const PROXY_LARGE_FILE = { name: "64m.bin", bytes: 64 * 1024 * 1024 } as const;

/** The backends every proxy sends to, started once per run. */
export interface ProxyBackends {
  /** nginx: GET /hello answers "hello"; other paths are files of the benchmark's www directory. */
  readonly httpPort: number;
  /** Raw Bun.listen echo (bench/baselines/bun-echo.ts). */
  readonly echoPort: number;
  readonly children: readonly Child[];
}

export type ProxyServerName =
  | "hps-proxy"
  | "nginx-proxy"
  | "nginx-proxy-unbuffered"
  | "bun-proxy"
  | "hps-tcp-proxy"
  | "nginx-stream";

/** Where a proxy's files go, its admin port (hps) and the core it is pinned to. */
export interface ProxyEnv {
  readonly tempDir: string;
  readonly serverCore: number | null;
  readonly adminPorts: number[];
  readonly backends: ProxyBackends;
  /** The checkout whose src/main.ts hps runs (default: this one), for A/B runs of two checkouts. */
  readonly repo?: string;
  /** --set arguments added to hps's command line (bench/e2e/cpu-per-request.ts --set). */
  readonly hpsSets?: readonly string[];
}

export interface ProxyServerSpec {
  readonly name: ProxyServerName;
  readonly description: string;
  start(env: ProxyEnv, port: number): Promise<Child>;
}

function nginxPreamble(prefix: string): string {
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  return `${user}worker_processes 1;
pid ${join(prefix, "nginx.pid")};
error_log ${join(prefix, "logs/error.log")} warn;
events { worker_connections 16384; }
`;
}

function nginxTempPaths(prefix: string): string {
  return ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `  ${kind}_temp_path ${join(prefix, kind)};`)
    .join("\n");
}

async function startNginx(
  name: string,
  tempDir: string,
  core: number | null,
  port: number,
  conf: (prefix: string) => string,
) {
  const prefix = join(tempDir, name);
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const confPath = join(prefix, "nginx.conf");
  writeFileSync(confPath, conf(prefix));
  return startChild({
    name,
    argv: [NGINX_BIN, "-p", prefix, "-c", confPath, "-g", "daemon off;"],
    core,
    readyPort: port,
    readyTimeoutMs: READY_TIMEOUT_MS,
    logPath: join(tempDir, `${name}.log`),
  });
}

/** Starts the backends on `core` (the load generator's): an nginx HTTP server and a Bun echo. */
export async function startProxyBackends(
  tempDir: string,
  wwwDir: string,
  core: number | null,
  ports: readonly [number, number],
): Promise<ProxyBackends> {
  const [httpPort, echoPort] = ports;
  const http = await startNginx("backend-nginx", tempDir, core, httpPort, (prefix) => {
    return `${nginxPreamble(prefix)}http {
  access_log off;
  keepalive_requests 1000000;
  # Idle proxies' pooled connections stay open while the other servers take their turns (rounds can be minutes long).
  keepalive_timeout 600s;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
${nginxTempPaths(prefix)}
  server {
    listen 127.0.0.1:${httpPort};
    root ${wwwDir};
    location = /hello { return 200 "hello"; }
  }
}
`;
  });
  const echo = await startChild({
    name: "backend-echo",
    argv: ["bun", join(REPO, "bench/baselines/bun-echo.ts"), "--port", String(echoPort)],
    core,
    readyPort: echoPort,
    readyTimeoutMs: READY_TIMEOUT_MS,
    cwd: REPO,
    logPath: join(tempDir, "backend-echo.log"),
  });
  return { httpPort, echoPort, children: [http, echo] };
}

/** hps with a config file: lists ([[upstreams]], [[http.routes]]) are written in the file only. */
async function startHps(
  name: string,
  env: ProxyEnv,
  port: number,
  protocol: "http" | "tcp_proxy",
  toml: string,
): Promise<Child> {
  const adminPort = env.adminPorts.shift();
  if (adminPort === undefined) throw new Error("out of admin ports");
  // A second checkout's hps (--b) beside this one's gets files of its own.
  const label = env.repo === undefined ? name : `${name}-b`;
  const path = join(env.tempDir, `${label}.toml`);
  writeFileSync(
    path,
    `[server]
protocol = "${protocol}"
bind = "127.0.0.1"
port = ${port}

[admin]
port = ${adminPort}

[log]
level = "warn"
access_log = false

[stats]
interval_s = 0
${toml}`,
  );
  const repo = env.repo ?? REPO;
  const sets = (env.hpsSets ?? []).flatMap((set) => ["--set", set]);
  return startChild({
    name: label,
    argv: ["bun", join(repo, "src/main.ts"), "--config", path, ...sets],
    core: env.serverCore,
    readyPort: port,
    readyTimeoutMs: READY_TIMEOUT_MS,
    cwd: repo,
    logPath: join(env.tempDir, `${label}.log`),
  });
}

/** nginx as an HTTP reverse proxy to the backend, `extra` added to its location. */
function nginxProxy(name: ProxyServerName, description: string, extra: string): ProxyServerSpec {
  return {
    name,
    description,
    start: (env, port) =>
      startNginx(name, env.tempDir, env.serverCore, port, (prefix) => {
        return `${nginxPreamble(prefix)}http {
  access_log off;
  keepalive_requests 1000000;
${nginxTempPaths(prefix)}
  upstream backend {
    server 127.0.0.1:${env.backends.httpPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";${extra}
    }
  }
}
`;
      }),
  };
}

export const PROXY_SERVERS: Record<ProxyServerName, ProxyServerSpec> = {
  "hps-proxy": {
    name: "hps-proxy",
    description:
      'hps, protocol http, one route (path_prefix "/") to an upstream of the nginx backend, keepalive_connections 64, access log off',
    start: (env, port) =>
      startHps(
        "hps-proxy",
        env,
        port,
        "http",
        `
[[upstreams]]
name = "backend"
servers = ["127.0.0.1:${env.backends.httpPort}"]
keepalive_connections = 64

[[http.routes]]
path_prefix = "/"
upstream = "backend"
`,
      ),
  },
  "nginx-proxy": nginxProxy(
    "nginx-proxy",
    'nginx, worker_processes 1, proxy_pass to the same backend with keepalive 64 (HTTP/1.1, Connection ""), access_log off, proxy buffering as default (a large response the client reads slower than the backend sends goes through a temporary file)',
    "",
  ),
  "nginx-proxy-unbuffered": nginxProxy(
    "nginx-proxy-unbuffered",
    "nginx-proxy with proxy_buffering off (passes the response on as it arrives, as hps does)",
    "\n      proxy_buffering off;",
  ),
  "bun-proxy": {
    name: "bun-proxy",
    description:
      "raw Bun proxy (bench/baselines/bun-proxy.ts): pooled Bun.connect, request line and Host only, Content-Length responses passed back; the ceiling hps's proxy adds its features to",
    start: (env, port) =>
      startChild({
        name: "bun-proxy",
        argv: [
          "bun",
          join(REPO, "bench/baselines/bun-proxy.ts"),
          "--port",
          String(port),
          "--upstream",
          `127.0.0.1:${env.backends.httpPort}`,
        ],
        core: env.serverCore,
        readyPort: port,
        readyTimeoutMs: READY_TIMEOUT_MS,
        cwd: REPO,
        logPath: join(env.tempDir, "bun-proxy.log"),
      }),
  },
  "hps-tcp-proxy": {
    name: "hps-tcp-proxy",
    description: "hps, protocol tcp_proxy to the Bun echo backend",
    start: (env, port) =>
      startHps(
        "hps-tcp-proxy",
        env,
        port,
        "tcp_proxy",
        `
[proxy]
upstream = "echo"

[[upstreams]]
name = "echo"
servers = ["127.0.0.1:${env.backends.echoPort}"]
`,
      ),
  },
  "nginx-stream": {
    name: "nginx-stream",
    description: "nginx, worker_processes 1, stream { proxy_pass } to the same Bun echo backend (libnginx-mod-stream)",
    start: (env, port) =>
      startNginx("nginx-stream", env.tempDir, env.serverCore, port, (prefix) => {
        return `load_module ${STREAM_MODULE};
${nginxPreamble(prefix)}stream {
  upstream echo { server 127.0.0.1:${env.backends.echoPort}; }
  server {
    listen 127.0.0.1:${port};
    proxy_pass echo;
  }
}
`;
      }),
  },
};

export function isProxyServer(name: string): name is ProxyServerName {
  return Object.hasOwn(PROXY_SERVERS, name);
}
