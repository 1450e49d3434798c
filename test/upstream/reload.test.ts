// Reloading [[upstreams]]: what a changed group keeps and what it must let go of.
import { describe, expect, test } from "bun:test";
import { Logger } from "../../src/log.ts";
import { UpstreamStats } from "../../src/upstream/stats.ts";
import { Upstreams } from "../../src/upstream/upstreams.ts";
import { waitFor } from "../helpers/common.ts";
import { startBackend, upstreamSettings } from "../helpers/upstream.ts";

describe("upstreams reload", () => {
  test("turning active checks off brings back a server a failed check had taken out", async () => {
    await using backend = startBackend((request) =>
      new URL(request.url).pathname === "/healthz" ? new Response("sick", { status: 503 }) : new Response("ok"),
    );
    const checked = upstreamSettings([backend.address], {
      health_check_path: "/healthz",
      health_check_interval_s: 0.1,
    });
    const upstreams = new Upstreams([checked], {
      stats: UpstreamStats.create(),
      logger: Logger.silent(),
      publishesGauges: false,
    });
    try {
      const group = upstreams.group("app")!;
      await waitFor(() => group.pick("client") === null, 5000, "the failing check to take the server out");
      upstreams.reconfigure([upstreamSettings([backend.address], { health_check_path: "" })]);
      // No check will ever pass again: the verdict of the last one must not keep the server out for good.
      expect(group.pick("client")).toBe(group.servers[0]!);
    } finally {
      upstreams.stop();
    }
  });
});
