// A graceful HTTP stop tells keep-alive clients to go: every response while draining says Connection: close, and the
// listener stops only once requests stopped coming (200 ms) or a second passed; an idle server stops at once.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSite } from "../helpers/http.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-drain-"));
const root = join(dir, "site");
mkdirSync(root);
writeFileSync(join(root, "a.txt"), "hello");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One keep-alive connection: send a request, read its response head and body; `closed` settles when it closes. */
async function keepAlive(port: number) {
  const socket: Socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  let buffered = "";
  let waiter: (() => void) | null = null;
  socket.on("data", (chunk) => {
    buffered += chunk.toString("latin1");
    waiter?.();
  });
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return {
    closed,
    async get(path: string): Promise<{ head: string; body: string }> {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      for (;;) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end >= 0) {
          const head = buffered.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? "0");
          if (buffered.length >= end + 4 + length) {
            const body = buffered.slice(end + 4, end + 4 + length);
            buffered = buffered.slice(end + 4 + length);
            return { head, body };
          }
        }
        await Promise.race([new Promise<void>((resolve) => (waiter = resolve)), Bun.sleep(5000)]);
      }
    },
    end: () => socket.destroy(),
  };
}

test("while draining, a request on an open keep-alive connection is answered with Connection: close", async () => {
  const site = await startSite(root);
  const client = await keepAlive(site.port);
  try {
    const first = await client.get("/a.txt");
    expect(first.body).toBe("hello");
    expect(first.head.toLowerCase()).not.toContain("connection: close");
    const startedMs = performance.now();
    const stopped = site.listener.stop({ graceful: true, timeoutMs: 5000 });
    await Bun.sleep(50); // a client that sends its next request a moment after the drain began
    const second = await client.get("/a.txt");
    expect(second.head).toStartWith("HTTP/1.1 200");
    expect(second.body).toBe("hello");
    expect(second.head.toLowerCase()).toContain("connection: close");
    await client.closed; // the server closed it after that answer
    await stopped;
    const tookMs = performance.now() - startedMs;
    // The listener waited for 200 ms without a request (after the one at ~50 ms), and not for the whole second.
    expect(tookMs).toBeGreaterThanOrEqual(240);
    expect(tookMs).toBeLessThan(1500);
  } finally {
    client.end();
  }
}, 15_000);

test("an idle server's graceful stop waits only for the quiet period", async () => {
  const site = await startSite(root);
  const startedMs = performance.now();
  await site.listener.stop({ graceful: true, timeoutMs: 5000 });
  const tookMs = performance.now() - startedMs;
  expect(tookMs).toBeGreaterThanOrEqual(190);
  expect(tookMs).toBeLessThan(1000);
});

test("the drain never outlasts the stop's deadline", async () => {
  const site = await startSite(root);
  const startedMs = performance.now();
  await site.listener.stop({ graceful: true, timeoutMs: 50 });
  expect(performance.now() - startedMs).toBeLessThan(190);
});
