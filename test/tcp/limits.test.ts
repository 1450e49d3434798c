// TCP listener limits: max_connections refused at open, idle timeout closes, counters.
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import type { ServerContext } from "../../src/context.ts";
import { Logger } from "../../src/log.ts";
import { Counter, Stats } from "../../src/stats/stats.ts";
import { InlineRunner } from "../../src/tcp/inline-runner.ts";
import { startTcp } from "../../src/tcp/listen.ts";
import { testConfig, waitFor, withAdmission } from "../helpers/common.ts";

async function connect(port: number, onClose: () => void): Promise<Socket<undefined>> {
  return Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, close: onClose } });
}

test("max_connections: the connection over the limit is closed at once and counted; others keep working", async () => {
  const config = testConfig({
    server: { protocol: "echo" },
    limits: { max_connections: 2, max_connections_per_ip: 2 },
  });
  const context: ServerContext = withAdmission({
    config,
    stats: Stats.create(),
    logger: Logger.silent(),
    gauges: new Map(),
  });
  await using server = await startTcp(context, new InlineRunner());
  const closed = [false, false, false];
  const sockets = [];
  for (let i = 0; i < 3; i++) {
    sockets.push(await connect(server.port, () => (closed[i] = true)));
    await waitFor(
      () =>
        context.stats.total(Counter.connectionsAccepted) + context.stats.total(Counter.connectionsRefused) === i + 1,
      5000,
      "open handled",
    );
  }
  await waitFor(() => closed[2] === true, 5000, "third refused");
  expect(closed.slice(0, 2)).toEqual([false, false]);
  expect(context.stats.total(Counter.connectionsRefused)).toBe(1);
  expect(context.stats.total(Counter.refusedMaxConnections)).toBe(1);
  sockets[0]!.end();
  await waitFor(() => context.stats.total(Counter.activeConnections) === 1, 5000, "one closed");
  let fourthClosed = false;
  const fourth = await connect(server.port, () => (fourthClosed = true));
  await waitFor(() => context.stats.total(Counter.connectionsAccepted) === 3, 5000, "fourth accepted");
  expect(fourthClosed).toBe(false);
  fourth.end();
  sockets[1]!.end();
});

test("connection_timeout_s closes an idle connection and counts it; an active one stays", async () => {
  const config = testConfig({ server: { protocol: "echo" }, limits: { connection_timeout_s: 0.3 } });
  const context: ServerContext = withAdmission({
    config,
    stats: Stats.create(),
    logger: Logger.silent(),
    gauges: new Map(),
  });
  await using server = await startTcp(context, new InlineRunner());
  let idleClosed = false;
  let activeClosed = false;
  let roundTrips = 0;
  await connect(server.port, () => (idleClosed = true));
  const startedMs = Date.now();
  // The active connection ping-pongs (each echo triggers the next byte) until the idle one is cut: activity
  // driven by events, no timer. Bounded by the idle close, a round-trip cap and waitFor's deadline.
  const active = await Bun.connect({
    hostname: "127.0.0.1",
    port: server.port,
    socket: {
      data: (socket) => {
        roundTrips++;
        if (!idleClosed && roundTrips < 1_000_000) socket.write("x");
      },
      close: () => void (activeClosed = true),
    },
  });
  active.write("x");
  await waitFor(() => idleClosed, 3000, "the idle connection to be cut");
  expect(Date.now() - startedMs).toBeGreaterThanOrEqual(250);
  expect(roundTrips).toBeGreaterThan(0);
  expect(activeClosed).toBe(false);
  expect(context.stats.total(Counter.connectionsTimedOut)).toBe(1);
  await waitFor(() => activeClosed, 5000, "active one times out once quiet");
  expect(context.stats.total(Counter.connectionsTimedOut)).toBe(2);
});
