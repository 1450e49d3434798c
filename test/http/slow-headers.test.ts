// http: a client whose request headers never complete is cut off by Bun after ~12 s, whatever idleTimeout says.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";

let root: string;
let site: RunningHttp;

beforeAll(async () => {
  root = makeTempDir("hps-slow-");
  writeFileSync(join(root, "a.txt"), "a");
  site = await startSite(root, { http: { keepalive_timeout_s: 255 } }); // the longest idle timeout: the cut is not it
});

afterAll(async () => {
  await site.stop();
  removeDir(root);
});

test("headers trickled one line a second are cut off after 10-14 s with no response", async () => {
  const startedMs = performance.now();
  let closedAfterMs = -1;
  let received = 0;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: site.port,
    socket: {
      data(_socket, data) {
        received += data.length;
      },
      close() {
        closedAfterMs = performance.now() - startedMs;
      },
    },
  });
  socket.write("GET /a.txt HTTP/1.1\r\nHost: t\r\n");
  // Keep the connection busy (never idle) but never finish the headers; bounded to 20 s.
  for (let line = 0; line < 20 && closedAfterMs < 0; line++) {
    await Bun.sleep(1000);
    if (closedAfterMs < 0) socket.write(`X-Slow-${line}: x\r\n`);
  }
  socket.end();
  expect(closedAfterMs).toBeGreaterThan(10_000);
  expect(closedAfterMs).toBeLessThan(14_000);
  expect(received).toBe(0);
}, 25_000);
