// A real redis-server (Debian's package) on a free loopback port, for the fleet tests: start, kill, restart, stall.
import { RedisClient, type Subprocess } from "bun";

const REDIS_SERVER = Bun.which("redis-server");
/** How long a starting redis-server may take to answer PING. */
const START_TIMEOUT_MS = 10_000;

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** A client of the test's own (closed by stop). */
  readonly client: RedisClient;
  /** SIGKILL: the server is gone at once, its state with it. */
  kill(): Promise<void>;
  /** A new redis-server on the same port (empty: the old state is lost). */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its connections open but answers nothing (a full stall). */
  pause(): void;
  /** SIGCONT after pause. */
  resume(): void;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Throws with the fix when redis-server is not installed. */
export function requireRedisServer(): string {
  if (REDIS_SERVER === null) {
    throw new Error("redis-server not found: install Debian's redis-server (apt-get install -y redis-server)");
  }
  return REDIS_SERVER;
}

/** A free TCP port on 127.0.0.1 (bound and released; the caller binds it right away). */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

function spawnRedis(binary: string, port: number, password: string | null): Subprocess {
  return Bun.spawn(
    [
      binary,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
      "--enable-debug-command",
      "yes",
      "--loglevel",
      "warning",
      ...(password === null ? [] : ["--requirepass", password]),
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
}

/** Resolves once redis at `url` answers PING; rejects when it exits or after START_TIMEOUT_MS. */
async function waitUntilAnswering(process: Subprocess, url: string): Promise<void> {
  const port = new URL(url).port;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (process.exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${process.exitCode}`);
    const probe = new RedisClient(url, {
      autoReconnect: false,
      enableOfflineQueue: false,
      connectionTimeout: 500,
    });
    try {
      await probe.connect();
      if ((await probe.send("PING", [])) === "PONG") return;
    } catch {
      // Not listening yet.
    } finally {
      probe.close();
    }
    if (Date.now() > deadline)
      throw new Error(`redis-server on port ${port} did not answer within ${START_TIMEOUT_MS} ms`);
    await Bun.sleep(20);
  }
}

/**
 * Starts redis-server on a free loopback port (retrying another port if one is taken meanwhile), or on `port` when
 * given (a test that points an instance at it before it runs); with `password`, Redis requires it (requirepass) and
 * `url` carries it.
 */
export async function startRedis(options: { port?: number; password?: string } = {}): Promise<RedisServer> {
  const password = options.password ?? null;
  const urlOf = (port: number) =>
    password === null ? `redis://127.0.0.1:${port}` : `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const binary = requireRedisServer();
  let port = 0;
  let process: Subprocess | null = null;
  const attempts = options.port === undefined ? 5 : 1;
  for (let attempt = 0; attempt < attempts && process === null; attempt++) {
    port = options.port ?? (await freePort());
    const candidate = spawnRedis(binary, port, password);
    try {
      await waitUntilAnswering(candidate, urlOf(port));
      process = candidate;
    } catch (error) {
      candidate.kill("SIGKILL");
      if (attempt === attempts - 1) throw error;
    }
  }
  let current = process!;
  const url = urlOf(port);
  const client = new RedisClient(url, { autoReconnect: true, connectionTimeout: 2000 });
  await client.connect();
  const kill = async () => {
    current.kill("SIGCONT");
    current.kill("SIGKILL");
    await current.exited;
  };
  const server: RedisServer = {
    port,
    url,
    client,
    kill,
    async restart() {
      await kill();
      current = spawnRedis(binary, port, password);
      await waitUntilAnswering(current, url);
    },
    pause: () => void current.kill("SIGSTOP"),
    resume: () => void current.kill("SIGCONT"),
    async stop() {
      client.close();
      await kill();
    },
    [Symbol.asyncDispose]: () => server.stop(),
  };
  return server;
}
