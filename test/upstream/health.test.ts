// Passive and active health: ejection after max_fails, return after fail_timeout_s or a passing check.
import { describe, expect, test } from "bun:test";
import { HealthState, ServerHealth } from "../../src/upstream/health.ts";
import { waitFor } from "../helpers/common.ts";
import { startBackend, startProxyFront, upstreamSettings } from "../helpers/upstream.ts";

describe("passive health", () => {
  test("max_fails failures within fail_timeout_s eject for fail_timeout_s; one more failure re-ejects", () => {
    const health = new ServerHealth(3, 10);
    expect(health.failed(0)).toBe(false);
    expect(health.failed(1000)).toBe(false);
    expect(health.isUp(1000)).toBe(true);
    expect(health.failed(2000)).toBe(true); // the third within 10 s
    expect(health.isUp(2001)).toBe(false);
    expect(health.state(2001)).toBe(HealthState.EJECTED);
    expect(health.isUp(12_000)).toBe(true); // back after fail_timeout_s
    // Still inside the window that counted 3 failures: the next failure ejects again at once.
    expect(health.failed(12_001)).toBe(true);
    expect(health.ejections).toBe(2);
  });

  test("failures spread wider than fail_timeout_s never eject; max_fails 0 never ejects", () => {
    const health = new ServerHealth(2, 1);
    for (let i = 0; i < 10; i++) expect(health.failed(i * 1500)).toBe(false);
    const never = new ServerHealth(0, 1);
    for (let i = 0; i < 100; i++) expect(never.failed(i)).toBe(false);
  });

  test("successes between failures do not hide a flaky server; one long after the last failure forgets them", () => {
    const flaky = new ServerHealth(3, 10);
    expect(flaky.failed(0)).toBe(false);
    flaky.succeeded(100);
    expect(flaky.failed(200)).toBe(false);
    flaky.succeeded(300);
    expect(flaky.failed(400)).toBe(true);
    const recovered = new ServerHealth(3, 10);
    recovered.failed(0);
    recovered.failed(100);
    recovered.succeeded(10_200); // more than fail_timeout_s after the last failure
    expect(recovered.failed(10_300)).toBe(false);
    expect(recovered.failed(10_400)).toBe(false);
    expect(recovered.failed(10_500)).toBe(true);
  });

  test("a passing active check ends an ejection at once; a failing one takes the server out", () => {
    const health = new ServerHealth(1, 60);
    health.failed(0);
    expect(health.isUp(1)).toBe(false);
    health.checked(true);
    expect(health.isUp(1)).toBe(true);
    health.checked(false);
    expect(health.state(1)).toBe(HealthState.CHECK_FAILED);
  });
});

describe("active health checks", () => {
  test("a server failing its check gets no requests, and is back within one interval of passing again", async () => {
    let isHealthy = true;
    let checks = 0;
    await using sick = startBackend((request) => {
      if (new URL(request.url).pathname === "/healthz") {
        checks += 1;
        expect(request.headers.get("user-agent")).toBe("hps-health-check");
        return new Response(isHealthy ? "ok" : "no", { status: isHealthy ? 200 : 500 });
      }
      return new Response("sick");
    });
    await using fine = startBackend((request) =>
      new URL(request.url).pathname === "/healthz" ? new Response("ok") : new Response("fine"),
    );
    isHealthy = false;
    await using front = startProxyFront(
      upstreamSettings([sick.address, fine.address], { health_check_path: "/healthz", health_check_interval_s: 1 }),
    );
    const server = front.group.servers[0]!;
    await waitFor(() => !server.health.isUp(performance.now()), 5000, "the failing check");
    for (let i = 0; i < 6; i++) expect(await (await fetch(`${front.base}/`)).text()).toBe("fine");
    isHealthy = true;
    const recoveredMs = performance.now();
    await waitFor(() => server.health.isUp(performance.now()), 5000, "the passing check");
    expect(performance.now() - recoveredMs).toBeLessThan(1500); // one interval, plus scheduling
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await (await fetch(`${front.base}/`)).text());
    expect(answers).toEqual(new Set(["sick", "fine"]));
    expect(checks).toBeGreaterThanOrEqual(2);
  });
});
