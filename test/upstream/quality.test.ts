// Load-balancing quality under real load (issue 16): in-flight spread with one slow server, and a server killed under
// load (no failed idempotent request, ejected within max_fails, back within one health interval of recovering).
import { describe, expect, test } from "bun:test";
import type { Server } from "bun";
import type { Strategy } from "../../src/upstream/types.ts";
import { waitFor } from "../helpers/common.ts";
import { startProxyFront, upstreamSettings } from "../helpers/upstream.ts";

/** A backend answering after `delayMs`, on a fixed port so it can be killed and started again. */
function backendOn(port: number, delayMs: number, name: string): Server<undefined> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: async (request) => {
      if (new URL(request.url).pathname === "/healthz") return new Response("ok");
      if (delayMs > 0) await Bun.sleep(delayMs);
      return new Response(name);
    },
  });
}

/** `clients` loops each sending GETs one after another until `until()` holds; resolves with every status seen. */
async function load(base: string, clients: number, until: () => boolean, maxRequests = 20_000) {
  const statuses = new Map<number, number>();
  let sent = 0;
  const loop = async () => {
    while (!until() && sent < maxRequests) {
      sent++;
      const response = await fetch(`${base}/work`);
      await response.arrayBuffer();
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  return { statuses, sent };
}

/**
 * Runs 24 clients against three servers, one ten times slower (100 ms against 10 ms), for about 2 s, and samples each server's requests in flight
 * (on the proxy's own thread, so every sample is a consistent state). Returns the mean in flight per server over the
 * samples, the worst instantaneous spread, and the statuses.
 */
async function spreadUnder(strategy: Strategy) {
  const slow = backendOn(0, 100, "slow");
  const fast = [backendOn(0, 10, "fast-a"), backendOn(0, 10, "fast-b")];
  const all = [slow, ...fast];
  try {
    await using front = startProxyFront(
      upstreamSettings(
        all.map((server) => `127.0.0.1:${server.port}`),
        { strategy },
      ),
    );
    const servers = front.group.servers;
    const sums = [0, 0, 0];
    let worst = 0;
    let samples = 0;
    const sampler = setInterval(() => {
      const counts = servers.map((server) => server.inFlight);
      samples++;
      counts.forEach((count, i) => {
        sums[i]! += count;
      });
      worst = Math.max(worst, Math.max(...counts) - Math.min(...counts));
    }, 2);
    const deadline = performance.now() + 2000;
    const result = await load(front.base, 24, () => performance.now() > deadline, 8000);
    clearInterval(sampler);
    const means = sums.map((sum) => sum / samples);
    console.log(
      `${strategy}: ${result.sent} requests, ${samples} samples, mean in flight slow/fast/fast ` +
        `${means.map((mean) => mean.toFixed(2)).join(" / ")}, worst instantaneous spread ${worst}`,
    );
    return { means, worst, samples, result };
  } finally {
    for (const server of all) server.stop(true);
  }
}

describe("in-flight spread with one slow server", () => {
  for (const strategy of ["least_conn", "random_two"] as Strategy[]) {
    test(`${strategy}: the servers' mean in-flight counts stay within 2 of each other`, async () => {
      const { means, samples, result } = await spreadUnder(strategy);
      expect(result.statuses.get(200)).toBe(result.sent);
      expect(samples).toBeGreaterThan(50);
      expect(Math.max(...means) - Math.min(...means)).toBeLessThanOrEqual(2);
    });
  }

  test("round_robin (for contrast): the slow server's queue grows far past the others", async () => {
    const { means, result } = await spreadUnder("round_robin");
    expect(result.statuses.get(200)).toBe(result.sent);
    expect(means[0]! - Math.max(means[1]!, means[2]!)).toBeGreaterThan(2);
  });
});

describe("a server killed under load", () => {
  test("no idempotent request fails; ejected within max_fails; back within one health interval of recovering", async () => {
    const servers = [backendOn(0, 2, "a"), backendOn(0, 2, "b"), backendOn(0, 2, "c")];
    const victimPort = servers[1]!.port as number;
    const victimAddress = `127.0.0.1:${victimPort}`;
    const intervalS = 1;
    try {
      await using front = startProxyFront(
        upstreamSettings(
          servers.map((server) => `127.0.0.1:${server.port}`),
          {
            max_fails: 2,
            fail_timeout_s: 30,
            retries: 2,
            health_check_path: "/healthz",
            health_check_interval_s: intervalS,
          },
        ),
      );
      const victim = front.group.servers[1]!;
      const counters = () => front.stats.read().find((numbers) => numbers.server === victimAddress)!.counters;
      let phase = "before";
      let stop = false;
      const running = load(front.base, 12, () => stop, 50_000);
      // However the test ends, the clients stop before the proxy does.
      await using _stopClients = {
        [Symbol.asyncDispose]: async () => {
          stop = true;
          await running.catch(() => {});
        },
      };
      await waitFor(() => counters().responses2xx > 100, 10_000, "traffic on every server");

      // Kill: in-flight requests on it are lost (and replayed elsewhere), new connections are refused.
      phase = "killed";
      servers[1]!.stop(true);
      await waitFor(() => !victim.health.isUp(performance.now()), 10_000, "the victim to be taken out");
      // Taken out at its max_fails-th failure. Attempts already under way then (requests in flight when it died, and
      // connections opened at the same moment) still fail after it; none starts once it is out:
      const failures = counters().connectFailures + counters().lost + counters().connectTimeouts;
      const attemptsWhenOut = failures + counters().responses2xx;
      // Out: nothing more is sent to it (a health check may run, but no request).
      await Bun.sleep(300);
      expect(counters().connectFailures + counters().lost + counters().responses2xx).toBe(attemptsWhenOut);

      // Back: started again on the same port, the next check brings it back within one interval.
      phase = "recovered";
      servers[1] = backendOn(victimPort, 2, "b");
      const recoveredMs = performance.now();
      await waitFor(() => victim.health.isUp(performance.now()), 5000, "the victim to come back");
      const backAfterMs = performance.now() - recoveredMs;
      const before = counters().responses2xx;
      await waitFor(() => counters().responses2xx > before + 20, 5000, "requests to reach it again");
      stop = true;
      const result = await running;
      console.log(
        `killed under load: ${result.sent} requests, statuses ${JSON.stringify([...result.statuses])}, ` +
          `${failures} failed attempts on the victim before it was out (max_fails 2, in flight at the kill included), ` +
          `back ${backAfterMs.toFixed(0)} ms after it recovered (interval ${intervalS * 1000} ms), phase ${phase}`,
      );
      expect(result.statuses.get(200)).toBe(result.sent);
      expect(backAfterMs).toBeLessThan(intervalS * 1000 + 500);
    } finally {
      for (const server of servers) server.stop(true);
    }
  }, 30_000);
});
