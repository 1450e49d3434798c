// The fleet's rate limiter on the request path: spending a leased token against this instance's own GCRA, in ns.
//
// Starts a redis-server (Debian's package) for the leases; every address first gets its lease from it, then the
// measured loops only spend tokens in hand (no Redis call happens on the request path, whatever the load).
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { RedisClient } from "bun";
import { configSchema } from "../../src/config/schema.ts";
import { FleetCounters } from "../../src/fleet/counters.ts";
import { FleetMember } from "../../src/fleet/member.ts";
import { Logger } from "../../src/log.ts";
import { Admission } from "../../src/net/admission.ts";
import { RateLimiter } from "../../src/net/rate-limiter.ts";
import { Stats } from "../../src/stats/stats.ts";

if (Bun.which("redis-server") === null) {
  process.stderr.write("fleet.bench.ts: redis-server not found (apt-get install -y redis-server)\n");
  process.exit(1);
}
const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const port = listener.port;
listener.stop(true);
const redis = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", ""], {
  stdout: "ignore",
  stderr: "ignore",
});
try {
  for (let attempt = 0; ; attempt++) {
    const probe = new RedisClient(`redis://127.0.0.1:${port}`, { autoReconnect: false, connectionTimeout: 200 });
    try {
      await probe.connect();
      break;
    } catch {
      if (attempt > 100) throw new Error("redis-server did not start");
      await Bun.sleep(20);
    } finally {
      probe.close();
    }
  }

  const ADDRESSES = Array.from({ length: 1024 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
  const ONE = "127.0.0.1";
  const config = configSchema.parse({
    rate_limit: { enabled: true, requests: 1_000_000_000, window_s: 1, max_tracked_ips: 100_000 },
    fleet: { redis_url: `redis://127.0.0.1:${port}`, key_prefix: "bench:" },
  });
  // Two holders: a member keeps one limiter at a time (a newer one replaces it).
  const counters = FleetCounters.create();
  const [member, admissionMember] = [0, 1].map(
    (threadIndex) =>
      new FleetMember({ fleet: config.fleet, logger: Logger.silent(), counters: counters.claimRow().row, threadIndex }),
  ) as [FleetMember, FleetMember];
  await Promise.all([member.start(), admissionMember.start()]);
  const local = new RateLimiter(1_000_000_000, 1, 0, 100_000);
  const fleet = member.rateLimiter(new RateLimiter(1_000_000_000, 1, 0, 100_000), config.rate_limit);
  const admissionLocal = new Admission({ ...config, fleet: { ...config.fleet, redis_url: "" } }, Stats.create());
  const admissionFleet = new Admission(config, Stats.create(), undefined, null, null, admissionMember);
  // Leases first: one answer per address puts a large batch of tokens in hand.
  let nowMs = performance.now();
  for (const ip of [ONE, ...ADDRESSES]) {
    fleet.take(ip, nowMs);
    admissionFleet.takeToken(ip, nowMs);
  }
  await Promise.all([member.settle(), admissionMember.settle()]);
  let next = 0;

  summary(() => {
    group("takeToken, one client", () => {
      bench("local limiter (RateLimiter)", () => do_not_optimize(admissionLocal.takeToken(ONE, (nowMs += 0.001))));
      bench("fleet limiter (leased token)", () => do_not_optimize(admissionFleet.takeToken(ONE, (nowMs += 0.001))));
    });
  });
  summary(() => {
    group("limiter alone, 1024 clients round robin", () => {
      bench("local limiter (RateLimiter)", () =>
        do_not_optimize(local.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
      );
      bench("fleet limiter (leased token)", () =>
        do_not_optimize(fleet.take(ADDRESSES[next++ & 1023]!, (nowMs += 0.001))),
      );
    });
  });
  await run();
  await Promise.all([member.stop(), admissionMember.stop()]);
} finally {
  redis.kill();
  await redis.exited;
}
