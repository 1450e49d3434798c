// The host around the server: server.pid_file, the service manager's notify socket ($NOTIFY_SOCKET, received by
// socat) and RLIMIT_NOFILE against limits.max_connections (raised, or a warning naming the fix; /stats reports it).
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileDescriptorsNeeded } from "../../src/host/fd-limit.ts";
import { sendDatagram, unixSocketAddress } from "../../src/host/notify.ts";
import { readPidFile } from "../../src/host/pid-file.ts";
import { startServer } from "../../src/server.ts";
import type { Snapshot } from "../../src/stats/snapshot.ts";
import { testConfig, waitFor } from "../helpers/common.ts";
import { REPO_ROOT, SOURCE_COMMAND, startHpsProcess } from "../helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "hps-host-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("server.pid_file", () => {
  test("written once the server listens, removed when it stops", async () => {
    const pidFile = join(dir, "hps.pid");
    const server = await startServer(testConfig({ server: { pid_file: pidFile } }));
    expect(readFileSync(pidFile, "utf8")).toBe(`${process.pid}\n`);
    await server.stop({ graceful: false, timeoutMs: 0 });
    expect(existsSync(pidFile)).toBe(false);
  });

  test("left alone at stop when it names another process (a successor took it over)", async () => {
    const pidFile = join(dir, "taken.pid");
    const server = await startServer(testConfig({ server: { pid_file: pidFile } }));
    writeFileSync(pidFile, "4242\n");
    await server.stop({ graceful: false, timeoutMs: 0 });
    expect(readPidFile(pidFile)).toBe(4242);
  });

  test("a path that cannot be written stops start-up, naming the setting", async () => {
    await expect(startServer(testConfig({ server: { pid_file: join(dir, "missing", "hps.pid") } }))).rejects.toThrow(
      /cannot write server.pid_file ".*missing\/hps.pid" \(directory ".*missing" does not exist\)/,
    );
  });
});

/** A unix datagram socket received by socat; every datagram's text is collected. */
function notifyReceiver(address: string): { text(): string; stop(): void } {
  const receiver = Bun.spawn(["socat", "-u", address, "-"], { stdout: "pipe", stderr: "inherit" });
  let text = "";
  void (async () => {
    for await (const chunk of receiver.stdout) text += new TextDecoder().decode(chunk);
  })();
  return { text: () => text, stop: () => receiver.kill() };
}

/** socat binds its socket soon after it starts: send until one datagram gets through. */
async function whenListening(path: string): Promise<void> {
  await waitFor(() => sendDatagram(path, "PROBE=1\n") === null, 5000, `socat to bind ${path}`);
}

describe("service manager notification", () => {
  test("an address for a path is NUL-terminated; an abstract name (@) starts with NUL and is not", () => {
    const path = unixSocketAddress("/run/systemd/notify")!;
    expect(path.length).toBe(2 + 19 + 1);
    expect(path.address[0]).toBe(1); // AF_UNIX, little-endian
    const abstract = unixSocketAddress("@hps/notify")!;
    expect(abstract.length).toBe(2 + 11);
    expect(abstract.address[2]).toBe(0);
    expect(unixSocketAddress(`/${"x".repeat(200)}`)).toBeNull();
  });

  test("READY=1 with MAINPID once listening, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 at SIGTERM", async () => {
    const socketPath = join(dir, "notify.sock");
    const receiver = notifyReceiver(`UNIX-RECV:${socketPath}`);
    try {
      await whenListening(socketPath);
      const server = await startHpsProcess({
        command: SOURCE_COMMAND,
        args: ["--set", "server.bind=127.0.0.1", "--port", "0", "--set", "admin.enabled=false", "--protocol", "echo"],
        env: { NOTIFY_SOCKET: socketPath },
      });
      await waitFor(() => receiver.text().includes("READY=1"), 5000, "READY=1");
      expect(receiver.text()).toContain(
        `READY=1\nMAINPID=${server.pid}\nSTATUS=serving echo on 127.0.0.1:${server.port}\n`,
      );
      server.process.kill("SIGHUP");
      await waitFor(() => receiver.text().split("READY=1").length === 3, 10_000, "READY=1 after the reload");
      expect(receiver.text()).toContain("RELOADING=1\nSTATUS=reloading\n");
      expect(await server.stop("SIGTERM")).toBe(0);
      await waitFor(() => receiver.text().includes("STOPPING=1"), 5000, "STOPPING=1");
    } finally {
      receiver.stop();
    }
  }, 30_000);

  test("an abstract socket ($NOTIFY_SOCKET=@name) gets the datagram too", async () => {
    const name = `hps-test-${process.pid}-${Date.now()}`;
    const receiver = notifyReceiver(`ABSTRACT-RECV:${name}`);
    try {
      await whenListening(`@${name}`);
      expect(sendDatagram(`@${name}`, "READY=1\n")).toBeNull();
      await waitFor(() => receiver.text().includes("READY=1"), 5000, "READY=1");
    } finally {
      receiver.stop();
    }
  });

  test("a socket nobody listens on is an error that names it (the server logs it and keeps serving)", () => {
    expect(sendDatagram(join(dir, "nobody.sock"), "READY=1\n")).toMatch(/sendto .*nobody.sock failed \(errno 2\)/);
  });
});

/** The file descriptor figures of a /stats snapshot: the process's, and the fileDescriptors gauge group. */
function fdGauge(stats: Snapshot): { used: number; limit: number; hardLimit: number; needed: number } {
  const group = stats.gauges.fileDescriptors;
  if (group === undefined) throw new Error("/stats has no fileDescriptors gauge");
  return {
    used: stats.process.fileDescriptorsUsed,
    limit: stats.process.fileDescriptorsLimit,
    hardLimit: group.hardLimit!,
    needed: group.needed!,
  };
}

/** Whether this process may raise its hard limits (CAP_SYS_RESOURCE, bit 24 of the effective capabilities). */
function canRaiseHardLimit(): boolean {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return match !== null && (BigInt(`0x${match[1]}`) & (1n << 24n)) !== 0n;
}

/** Starts hps (from source) under `ulimit -Hn hard` with limits.max_connections = maxConnections. */
function startLimited(hard: number, maxConnections: number) {
  const args = [
    "--set",
    "server.bind=127.0.0.1",
    "--port",
    "0",
    "--set",
    "admin.bind=127.0.0.1",
    "--set",
    "admin.port=0",
    "--protocol",
    "echo",
    "--set",
    `limits.max_connections=${maxConnections}`,
  ];
  const quoted = [...SOURCE_COMMAND, ...args].map((arg) => `'${arg}'`).join(" ");
  return startHpsProcess({
    command: ["sh", "-c", `ulimit -Sn 1024 && ulimit -Hn ${hard} && exec ${quoted}`],
    args: [],
    cwd: REPO_ROOT,
  });
}

describe("RLIMIT_NOFILE", () => {
  test("a hard limit below what limits.max_connections needs: raised with CAP_SYS_RESOURCE, else a warning naming the fix; /stats reports it", async () => {
    await using server = await startLimited(4096, 10_000);
    const stats = (await (await fetch(`http://127.0.0.1:${server.adminPort}/stats`)).json()) as Snapshot;
    const fds = fdGauge(stats);
    expect(fds.used).toBeGreaterThan(3);
    expect(fds.needed).toBeGreaterThan(10_000);
    if (canRaiseHardLimit()) {
      expect(server.stderr()).toContain("file descriptors: limit raised from");
      expect(fds.limit).toBeGreaterThanOrEqual(fds.needed);
    } else {
      await server.waitForLog(
        /file descriptors: limits.max_connections = 10000 needs about \d+ but this process may open only 4096/,
      );
      expect(server.stderr()).toContain("raising it needs CAP_SYS_RESOURCE");
      expect(server.stderr()).toContain("LimitNOFILE=");
      expect(fds).toMatchObject({ limit: 4096, hardLimit: 4096 });
    }
    const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    expect(metrics).toContain(`hps_file_descriptors_limit ${fds.limit}`);
    expect(metrics).toContain(`hps_file_descriptors_hard_limit ${fds.hardLimit}`);
    expect(metrics).toContain(`hps_file_descriptors_needed ${fds.needed}`);
  }, 30_000);

  test("enough under the hard limit: no warning; the soft limit is at least what is needed", async () => {
    await using server = await startLimited(4096, 1000);
    const stats = (await (await fetch(`http://127.0.0.1:${server.adminPort}/stats`)).json()) as Snapshot;
    const fds = fdGauge(stats);
    expect(fds.limit).toBeGreaterThanOrEqual(fds.needed);
    expect(fds.needed).toBeLessThan(4096);
    expect(server.stderr()).not.toContain("file descriptors:");
  }, 30_000);

  test("a soft limit below the need and the hard limit is raised to the need", async () => {
    // Bun raises the soft limit to the hard one at start, so lower it first, in a process of its own.
    const child = Bun.spawnSync(
      [
        process.execPath,
        "-e",
        [
          'import { getResourceLimit, libc, RLIMIT_NOFILE, setResourceLimit } from "./src/host/libc.ts";',
          'import { ensureFileDescriptors } from "./src/host/fd-limit.ts";',
          'import { testConfig } from "./test/helpers/common.ts";',
          "const c = libc();",
          "const before = getResourceLimit(c, RLIMIT_NOFILE);",
          "setResourceLimit(c, RLIMIT_NOFILE, { soft: 256, hard: before.hard });",
          "const report = ensureFileDescriptors(testConfig({ limits: { max_connections: 1000 } }));",
          "console.log(JSON.stringify({ report, after: getResourceLimit(c, RLIMIT_NOFILE) }));",
        ].join("\n"),
      ],
      { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" },
    );
    expect(child.stderr.toString()).toBe("");
    const { report, after } = JSON.parse(child.stdout.toString());
    expect(report.raisedFrom).toBe(256);
    expect(report.problem).toBeNull();
    expect(after.soft).toBe(report.needed);
    // One per connection, the reserve, and what the process had open (a few dozen at most for a bare bun).
    const withoutOpen = fileDescriptorsNeeded(testConfig({ limits: { max_connections: 1000 } }), 0);
    expect(report.needed).toBeGreaterThan(withoutOpen);
    expect(report.needed).toBeLessThan(withoutOpen + 100);
  });
});
