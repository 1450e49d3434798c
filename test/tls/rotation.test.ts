// Listener rotation: new handshakes get the new certificate, open connections keep theirs, nothing arriving is reset.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server, TLSOptions } from "bun";
import { waitFor } from "../helpers/common.ts";
import { makeTestCa, presentedSerial, issueLocalhost, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";
import { Rotation, servedListener } from "../../src/tls/rotation.ts";

let ca: TestCa;
let first: IssuedCertificate;
let second: IssuedCertificate;

beforeAll(async () => {
  ca = await makeTestCa();
  first = await issueLocalhost(ca, "first");
  second = await issueLocalhost(ca, "second");
});
afterAll(() => ca.remove());

const tlsOf = (pair: IssuedCertificate): TLSOptions[] => [{ cert: pair.cert, key: pair.key }];

function startServe(steer: boolean, body = "ok"): Promise<Rotation<Server<undefined>>> {
  return Rotation.start({
    tls: tlsOf(first),
    port: 0,
    open: (tls, port) =>
      Bun.serve({ hostname: "127.0.0.1", port, reusePort: true, tls, fetch: () => new Response(body) }),
    portOf: (server) => server.port!,
    wrap: servedListener,
    steer,
  });
}

describe("a Bun.serve rotation", () => {
  test("new handshakes get the new certificate; a connection opened before keeps being served", async () => {
    const rotation = await startServe(true);
    try {
      expect(await presentedSerial(rotation.port, "localhost")).toBe(first.serial);
      // A keep-alive connection made before the rotation, with a request in flight across it.
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => (release = resolve));
      const arrived = Promise.withResolvers<void>();
      rotation.active.reload({
        fetch: async () => {
          arrived.resolve();
          await gate;
          return new Response("slow");
        },
      });
      const slow = fetch(`https://127.0.0.1:${rotation.port}/`, { tls: { ca: ca.cert, serverName: "localhost" } });
      await arrived.promise; // the request is in the handler before the rotation
      const report = await rotation.rotate(tlsOf(second));
      expect(report.steered).toBe(process.platform === "linux");
      if (report.steered) expect(report.leftInQueue).toBe(0);
      expect(await presentedSerial(rotation.port, "localhost")).toBe(second.serial);
      expect(rotation.all()).toHaveLength(2); // the old listener still has the slow request's connection
      release();
      const response = await slow;
      expect(await response.text()).toBe("slow");
    } finally {
      await rotation.close();
    }
  });

  test("connections arriving during rotations are all served (steered on Linux)", async () => {
    const rotation = await startServe(true, "hello");
    const url = `https://127.0.0.1:${rotation.port}/`;
    let failures = 0;
    let served = 0;
    let running = true;
    // Eight clients, each opening a new connection per request, until the rotations are done (bounded below).
    const clients = Array.from({ length: 8 }, async () => {
      while (running) {
        try {
          const response = await fetch(url, { keepalive: false, tls: { ca: ca.cert, serverName: "localhost" } });
          if ((await response.text()) === "hello") served++;
          else failures++;
        } catch {
          failures++;
        }
      }
    });
    try {
      for (let i = 0; i < 8; i++) {
        // Connections keep arriving across each swap: a few dozen are served before every rotation.
        const before = served;
        await waitFor(() => served >= before + 30 || failures > 0, 10_000, "requests served between rotations");
        await rotation.rotate(tlsOf(i % 2 === 0 ? second : first));
      }
      const before = served;
      await waitFor(() => served >= before + 30 || failures > 0, 10_000, "requests served after the rotations");
    } finally {
      running = false;
      await Promise.all(clients);
      await rotation.close();
    }
    expect(served).toBeGreaterThan(0);
    expect(failures).toBe(0);
  });

  test("a close during a rotation ends the rotation at once (the closed sockets are not polled for seconds)", async () => {
    const rotation = await startServe(true);
    const startedMs = performance.now();
    const rotating = rotation.rotate(tlsOf(second));
    await rotation.close();
    await rotating;
    // Without the stop check, the retiring listener's (closed) socket was polled until the 5 s settle limit.
    expect(performance.now() - startedMs).toBeLessThan(2500);
  }, 15_000);
});
