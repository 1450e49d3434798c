// Why a connection to Redis failed. Bun's client rejects every failed connection with "Connection closed" (a wrong
// password, none where Redis wants one, an unknown host, a refused port, TLS against a plain port: see
// docs/upstream/redis-connect-reason.md), which tells an operator nothing. Once per outage the link asks again by
// hand: resolve and connect, then the commands Bun's handshake sends (AUTH, SELECT, HELLO 3), and names what failed.

/** What went wrong, for the outage's log line; null when the probe found nothing wrong (the client's reason stands). */
export async function diagnoseConnection(url: string, timeoutMs: number): Promise<string | null> {
  let target: ProbeTarget;
  try {
    target = probeTarget(url);
  } catch {
    return null;
  }
  if (target.unix) return null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<string>((resolve) => {
    const where = `${target.host}:${target.port}`;
    // A plain Redis reads a ClientHello as a command it waits to see the end of: TLS then hangs rather than fails.
    const what = target.tls ? `no TLS handshake with ${where} (is it a TLS port?)` : `no answer from ${where}`;
    timer = setTimeout(() => resolve(`${what} within ${timeoutMs} ms`), timeoutMs);
  });
  try {
    return await Promise.race([probe(target), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

interface ProbeTarget {
  readonly unix: boolean;
  readonly tls: boolean;
  readonly host: string;
  readonly port: number;
  /** AUTH's arguments ([password] or [user, password]); empty without a password. */
  readonly auth: string[];
  readonly database: number;
}

function probeTarget(url: string): ProbeTarget {
  const parsed = new URL(url);
  const scheme = parsed.protocol.slice(0, -1);
  const password = decodeURIComponent(parsed.password);
  const user = decodeURIComponent(parsed.username);
  const auth = password === "" ? [] : user === "" ? [password] : [user, password];
  return {
    unix: scheme.endsWith("+unix"),
    tls: scheme === "rediss" || scheme === "valkeys" || scheme === "redis+tls",
    host: parsed.hostname.replace(/^\[|\]$/g, ""),
    port: parsed.port === "" ? 6379 : Number(parsed.port),
    auth,
    database: Number(parsed.pathname.slice(1)) || 0,
  };
}

/** RESP array of bulk strings. */
function command(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")}`;
}

async function probe(target: ProbeTarget): Promise<string | null> {
  const where = `${target.host}:${target.port}`;
  const commands: string[][] = [];
  if (target.auth.length > 0) commands.push(["AUTH", ...target.auth]);
  if (target.database !== 0) commands.push(["SELECT", String(target.database)]);
  // HELLO last: its answer is a map of several lines, of which only the first (an error or not) is read.
  commands.push(["PING"], ["HELLO", "3"]);
  let received = "";
  let settle: (reason: string | null) => void = () => {};
  const outcome = new Promise<string | null>((resolve) => {
    settle = resolve;
  });
  const onData = (text: string) => {
    received += text;
    const lines = received.split("\r\n");
    for (let i = 0; i < Math.min(lines.length - 1, commands.length); i++) {
      const line = lines[i]!;
      if (line.startsWith("-")) return settle(redisError(line.slice(1), commands[i]![0]!));
      if (i === commands.length - 1) return settle(null);
    }
  };
  let socket: Awaited<ReturnType<typeof Bun.connect>>;
  try {
    socket = await Bun.connect({
      hostname: target.host,
      port: target.port,
      ...(target.tls ? { tls: true } : {}),
      socket: {
        data: (_socket, bytes) => onData(Buffer.from(bytes).toString("latin1")),
        handshake: (_socket, success, error) => {
          if (!success && error !== null) {
            settle(`TLS with ${where} failed (${error.message}); rediss:// needs a TLS port`);
          }
        },
        close: () =>
          settle(received === "" && target.tls ? `${where} closed the TLS handshake: is it a TLS port?` : null),
        error: (_socket, error) => settle(error.message),
      },
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `host "${target.host}" not found`;
    if (code === "ECONNREFUSED") return `connection refused by ${where}`;
    return (error as Error).message;
  }
  socket.write(commands.map(command).join(""));
  const reason = await outcome;
  socket.end();
  return reason;
}

/** An error reply, with what to look at in fleet.redis_url. */
function redisError(message: string, commandName: string): string {
  const answered = `Redis answered ${commandName} with "${message}"`;
  if (/^(WRONGPASS|NOAUTH|ERR (invalid password|AUTH|Client sent AUTH))/.test(message)) {
    return `${answered}: check the user and password in fleet.redis_url`;
  }
  if (commandName === "SELECT") return `${answered}: check the database number in fleet.redis_url`;
  if (commandName === "HELLO") return `${answered}: Bun's Redis client needs Redis 6 or newer (or Valkey)`;
  return answered;
}
