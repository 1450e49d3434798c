// The socket calls behind rotation steering (src/tls/reuseport-steering.ts): finding a Bun.serve listener's descriptor
// cheaply, and failing safe when the kernel refuses the steering program.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server, TLSOptions } from "bun";
import { closeSync, openSync } from "node:fs";
import { Rotation, servedListener } from "../../src/tls/rotation.ts";
import {
  listenerDescriptor,
  loadSteering,
  nextDescriptor,
  steerNewConnections,
} from "../../src/tls/reuseport-steering.ts";
import { issueLocalhost, makeTestCa, presentedSerial, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";

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
const serve = (tls: TLSOptions[], port: number): Server<undefined> =>
  Bun.serve({ hostname: "127.0.0.1", port, reusePort: true, tls, fetch: () => new Response("ok") });

describe.skipIf(process.platform !== "linux")("on Linux", () => {
  test("a listener is found at the descriptor predicted before it opened; a wrong guess falls back to the scan", async () => {
    expect(await loadSteering()).toBe(true);
    const predicted = nextDescriptor();
    const server = serve(tlsOf(first), 0);
    try {
      const port = server.port!;
      expect(predicted).not.toBeNull();
      expect(listenerDescriptor(port, new Set(), predicted)).toBe(predicted);
      // A descriptor that is not the listener (a file; a number not open), or one already known: the scan finds it.
      const file = openSync("/dev/null", "r");
      try {
        expect(listenerDescriptor(port, new Set(), file)).toBe(predicted);
        expect(listenerDescriptor(port, new Set(), 100_000)).toBe(predicted);
        expect(listenerDescriptor(port, new Set([predicted!]), predicted)).toBeNull();
      } finally {
        closeSync(file);
      }
    } finally {
      await server.stop(true);
    }
  });

  test("when the kernel refuses the steering program, a rotation goes on unsteered and serves the new certificate", async () => {
    const file = openSync("/dev/null", "r");
    expect(steerNewConnections(file, 1)).toBe(false); // not a socket: setsockopt fails
    try {
      const rotation = await Rotation.start({
        tls: tlsOf(first),
        port: 0,
        open: serve,
        portOf: (server) => server.port!,
        wrap: servedListener,
        // The "listener" handed to the steering calls is the file, so attaching the program fails.
        descriptorOf: () => file,
        steer: true,
      });
      try {
        const report = await rotation.rotate(tlsOf(second));
        expect(report).toEqual({ steered: false, leftInQueue: -1 });
        expect(await presentedSerial(rotation.port, "localhost")).toBe(second.serial);
      } finally {
        await rotation.close();
      }
    } finally {
      closeSync(file);
    }
  });
});
