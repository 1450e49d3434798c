// HTTP connections and bytes read are counted without per-connection events: the kernel's socket table, sampled.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { PortSocketSampler, startSocketSampling } from "../../src/stats/socket-sampler.ts";
import { Counter } from "../../src/stats/stats.ts";
import { waitFor } from "../helpers/common.ts";
import { makeTempDir, rawExchange, removeDir, startSite, type RunningHttp } from "../helpers/http.ts";

const TCP_TITLES = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
/** A /proc/net/tcp line: local and remote as HEX:PORT, state, inode. */
function tcpLine(slot: number, local: string, remote: string, state: string, inode: number): string {
  return `${String(slot).padStart(4)}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000  1000        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;
}

describe("PortSocketSampler", () => {
  test("counts sockets on the port in any state but LISTEN, from tcp and tcp6; sees them come and go", () => {
    const dir = makeTempDir("hps-proc-");
    const tcp = join(dir, "tcp");
    const tcp6 = join(dir, "tcp6");
    const v6 = "0000000000000000FFFF00000100007F";
    const write = (tcpLines: string, tcp6Lines: string) => {
      writeFileSync(tcp, TCP_TITLES + tcpLines);
      writeFileSync(tcp6, TCP_TITLES + tcp6Lines);
    };
    try {
      // Port 8080 is 1F90. Listening socket, two connections (one closing), one in TIME_WAIT (no inode), a client
      // socket whose *remote* port is 8080, and a connection on another port.
      write(
        tcpLine(0, "00000000:1F90", "00000000:0000", "0A", 100) +
          tcpLine(1, "0100007F:1F90", "0100007F:C350", "01", 101) +
          tcpLine(2, "0100007F:1F90", "0100007F:C351", "08", 102) +
          tcpLine(3, "0100007F:1F90", "0100007F:C352", "06", 0) +
          tcpLine(4, "0100007F:C353", "0100007F:1F90", "01", 103) +
          tcpLine(5, "0100007F:1F91", "0100007F:C354", "01", 104),
        tcpLine(0, `${v6}:1F90`, `${v6}:C355`, "01", 105),
      );
      const sampler = new PortSocketSampler(8080, [tcp, tcp6]);
      expect(sampler.sample()).toEqual({ open: 3, opened: 3, closed: 0 });
      write(
        tcpLine(1, "0100007F:1F90", "0100007F:C350", "01", 101) +
          tcpLine(2, "0100007F:1F90", "0100007F:C356", "01", 106),
        "",
      );
      expect(sampler.sample()).toEqual({ open: 2, opened: 1, closed: 2 });
      expect(new PortSocketSampler(8080, [join(dir, "absent")]).sample()).toBeNull();
    } finally {
      removeDir(dir);
    }
  });
});

describe("a socket table that cannot be read for a moment (out of file descriptors)", () => {
  test("the sample fails instead of counting half the sockets, and the next one counts from the last good one", () => {
    const dir = makeTempDir("hps-proc-");
    const tcp = join(dir, "tcp");
    const tcp6 = join(dir, "tcp6");
    try {
      writeFileSync(tcp, TCP_TITLES + tcpLine(1, "0100007F:1F90", "0100007F:C350", "01", 101));
      writeFileSync(tcp6, TCP_TITLES);
      const sampler = new PortSocketSampler(8080, [tcp, tcp6]);
      expect(sampler.sample()).toEqual({ open: 1, opened: 1, closed: 0 });
      rmSync(tcp6);
      mkdirSync(tcp6); // reading it fails with EISDIR, as reading any file does with EMFILE
      expect(() => sampler.sample()).toThrow();
      rmSync(tcp6, { recursive: true });
      writeFileSync(tcp6, TCP_TITLES);
      writeFileSync(tcp, TCP_TITLES + tcpLine(1, "0100007F:1F90", "0100007F:C351", "01", 102));
      expect(sampler.sample()).toEqual({ open: 1, opened: 1, closed: 1 });
    } finally {
      removeDir(dir);
    }
  });

  test("sampling goes on after a failed sample: the figures follow the sockets again", async () => {
    const dir = makeTempDir("hps-proc-");
    const tcp = join(dir, "tcp");
    const seen: number[] = [];
    const stats = { connectionsSampled: (open: number) => void seen.push(open) };
    writeFileSync(tcp, TCP_TITLES + tcpLine(1, "0100007F:1F90", "0100007F:C350", "01", 101));
    const sampling = startSocketSampling(stats, 8080, [tcp]);
    try {
      expect(seen).toEqual([1]);
      rmSync(tcp);
      mkdirSync(tcp);
      sampling.sampleNow(); // fails: nothing is reported, the next sample is still scheduled
      expect(seen).toEqual([1]);
      rmSync(tcp, { recursive: true });
      writeFileSync(tcp, TCP_TITLES);
      await waitFor(() => seen.at(-1) === 0, 10_000, "a sample after the failed one");
    } finally {
      sampling.stop();
      removeDir(dir);
    }
  });
});

describe("an HTTP listener counts its connections and bytes read by default", () => {
  let root: string;
  let site: RunningHttp;

  beforeAll(async () => {
    root = makeTempDir("hps-http-connections-");
    writeFileSync(join(root, "index.html"), "<h1>home</h1>");
    site = await startSite(root); // defaults: no connection_limits, no keep-alive limit, no access log
  });

  afterAll(async () => {
    await site.stop();
    removeDir(root);
  });

  test("open keep-alive connections are active; closed ones are counted closed", async () => {
    const stats = site.context.stats;
    const acceptedBefore = stats.total(Counter.connectionsAccepted);
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const socket = net.connect(site.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write("GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
      await new Promise((resolve) => socket.once("data", resolve));
      sockets.push(socket);
    }
    await waitFor(() => stats.total(Counter.activeConnections) === 5, 15_000, "5 active connections");
    expect(stats.total(Counter.connectionsAccepted) - acceptedBefore).toBe(5);
    expect(stats.total(Counter.maxActiveConnections)).toBeGreaterThanOrEqual(5);
    const closedBefore = stats.total(Counter.connectionsClosed);
    const allClosed = Promise.all(sockets.map((socket) => new Promise((resolve) => socket.once("close", resolve))));
    for (const socket of sockets) socket.destroy();
    await allClosed;
    await waitFor(() => stats.total(Counter.activeConnections) === 0, 15_000, "no active connection");
    expect(stats.total(Counter.connectionsClosed) - closedBefore).toBe(5);
  });

  test("bytes read: the request head exactly when it has only a Host, a lower bound otherwise, plus bodies", async () => {
    const stats = site.context.stats;
    const count = async (request: string): Promise<number> => {
      const before = stats.total(Counter.bytesRead);
      await rawExchange(
        site.port,
        request,
        (bytes) => bytes.includes(10) && new TextDecoder().decode(bytes).includes("\r\n\r\n"),
      );
      return stats.total(Counter.bytesRead) - before;
    };
    const hostOnly = "GET /nothing-here?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n";
    expect(await count(hostOnly)).toBe(hostOnly.length);
    // A cached file Bun routes natively: its query is not read, so it is left out of the bound.
    await count("GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
    await waitFor(() => site.context.gauges.get("httpCache")!().routes! > 0, 5000, "the cached path's route");
    const routed = "GET /index.html?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n";
    expect(await count(routed)).toBe(routed.length - "?x=1".length);
    const withFields = "GET /index.html HTTP/1.1\r\nHost: t\r\nUser-Agent: test-agent/1.0\r\nAccept: */*\r\n\r\n";
    const counted = await count(withFields);
    expect(counted).toBeLessThanOrEqual(withFields.length);
    // Each field but Host counts as the shortest field line possible ("x:" and CRLF, 4 bytes).
    const shortfall = (field: string) => field.length + 2 - 4;
    expect(counted).toBe(withFields.length - shortfall("User-Agent: test-agent/1.0") - shortfall("Accept: */*"));
    const post = "POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    expect(await count(post)).toBe(post.length - shortfall("Content-Length: 5"));
  });
});
