// The dashboard's fleet view in real headless Chromium: the fleet's sum and a row per instance; back to this instance.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, type Server } from "../../src/server.ts";
import { CHROMIUM, openInChromium } from "../helpers/chromium.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { startRedis, type RedisServer } from "../helpers/redis.ts";

if (CHROMIUM === null) {
  console.warn(
    "fleet-dashboard.test.ts: SKIPPING the headless-browser test: no chromium found (apt-get install -y chromium)",
  );
}

const root = mkdtempSync(join(tmpdir(), "hps-fleet-dashboard-"));
writeFileSync(join(root, "a.txt"), "fleet\n");
let redis: RedisServer;
const servers: Server[] = [];
beforeAll(async () => {
  redis = await startRedis();
  for (const id of ["east", "west"]) {
    servers.push(
      await startServer(
        testConfig({
          http: { root },
          admin: { enabled: true, port: 0 },
          fleet: { redis_url: redis.url, key_prefix: "dashboard:", instance_id: id },
        }),
      ),
    );
  }
});
afterAll(async () => {
  for (const server of servers) await server.stop();
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
});

test.skipIf(CHROMIUM === null)(
  "/dashboard#fleet draws the fleet's sum and lists its instances; 'this instance' switches back",
  async () => {
    for (const server of servers) await (await fetch(`http://127.0.0.1:${server.port}/a.txt`)).arrayBuffer();
    await Promise.all(servers.map((server) => server.context.fleet?.publishNow()));
    const page = await openInChromium(`http://127.0.0.1:${servers[0]!.adminPort}/dashboard#fleet`);
    try {
      const { devtools } = page;
      const rows = () =>
        devtools.evaluate<string[] | undefined>(
          `Array.from(document.querySelectorAll("#instances tbody tr td:first-child")).map((cell) => cell.textContent)`,
        );
      await waitFor(async () => (await rows())?.length === 2, 15_000, "two instances in the table");
      expect(await rows()).toEqual(["east", "west"]);
      expect(await devtools.evaluate<string>(`document.getElementById("summary").textContent`)).toMatch(
        /^fleet of 2 · 2 requests/,
      );
      expect(await devtools.evaluate<boolean>(`document.getElementById("scope").hidden`)).toBe(false);
      expect(await devtools.evaluate<boolean>(`document.getElementById("instances").hidden`)).toBe(false);
      // Back to this instance: its own summary, no table.
      await devtools.evaluate(`document.querySelector('#scope button[data-scope="instance"]').click()`);
      await waitFor(
        async () =>
          /^http · up/.test(await devtools.evaluate<string>(`document.getElementById("summary").textContent`)),
        10_000,
        "this instance's summary",
      );
      expect(await devtools.evaluate<boolean>(`document.getElementById("instances").hidden`)).toBe(true);
    } finally {
      await page.close();
    }
  },
  40_000,
);
