// The public listener's servers (src/http/listeners.ts): a certificate reload and a stop that overlap leave nothing open.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { HttpListeners } from "../../src/http/listeners.ts";
import { loadTlsState } from "../../src/tls/tls-state.ts";
import { testConfig } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { issueLocalhost, makeTestCa, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";

let ca: TestCa;
let first: IssuedCertificate;
let second: IssuedCertificate;
let root: string;

beforeAll(async () => {
  ca = await makeTestCa();
  first = await issueLocalhost(ca, "first");
  second = await issueLocalhost(ca, "second");
  root = makeTempDir("hps-tls-listeners-");
  writeFileSync(join(root, "index.html"), "hi\n");
});
afterAll(() => {
  ca.remove();
  removeDir(root);
});

const configFor = (pair: IssuedCertificate) =>
  testConfig({
    server: { protocol: "http" },
    http: { root, http3: true },
    tls: { enabled: true, cert_file: pair.certFile, key_file: pair.keyFile },
  });

/** Sockets of this process bound to `port` (/proc/self/net/<table> rows whose inode is one of our descriptors). */
function socketsOn(table: "tcp" | "udp", port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match !== null) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let count = 0;
  for (const row of readFileSync(`/proc/self/net/${table}`, "utf8").split("\n").slice(1)) {
    const fields = row.trim().split(/\s+/);
    if (fields[1]?.endsWith(portHex) && inodes.has(fields[9]!)) count++;
  }
  return count;
}

test.skipIf(process.platform !== "linux")(
  "a stop during a certificate rotation leaves no server open (HTTP/3 is not opened again after the stop)",
  async () => {
    const config = configFor(first);
    const tls = await loadTlsState(config);
    const { context } = createContext(config, null, tls);
    const listeners = await HttpListeners.start(context);
    const port = listeners.port;
    expect(socketsOn("udp", port)).toBe(1);
    const applying = listeners.applyTls((await loadTlsState(configFor(second)))!);
    await listeners.close();
    await applying.catch(() => {});
    expect(socketsOn("tcp", port)).toBe(0);
    expect(socketsOn("udp", port)).toBe(0);
    await context.logger.close();
  },
  15_000,
);
