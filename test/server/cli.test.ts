// The command line: --check runs the start-up checks and says what it read, --version, start-up failures before any
// claim to serve, and a compiled binary that knows its version without the sources on disk.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../../package.json" with { type: "json" };

const repo = join(import.meta.dir, "../..");
const main = join(repo, "src", "main.ts");
const fixtures = join(repo, "test", "fixtures");
const dir = mkdtempSync(join(tmpdir(), "hps-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `bun src/main.ts ...args` in `cwd` (with no HPS_* variables but those given) to its end. */
async function run(args: string[], cwd: string, env: Record<string, string> = {}) {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("HPS_")));
  const child = Bun.spawn(["bun", main, ...args], {
    cwd,
    env: { ...inherited, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}

/** A fresh empty directory (no server.toml) with a `public` folder, so the default http.root exists. */
function folder(name: string, withPublic = true): string {
  const path = join(dir, name);
  mkdirSync(withPublic ? join(path, "public") : path, { recursive: true });
  return path;
}

describe("--check", () => {
  test("with no server.toml: says the defaults were used (and which overrides), exits 0", async () => {
    const result = await run(["--check", "--set", "server.port=9001"], folder("no-file"), { HPS_LOG_LEVEL: "warn" });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      "no server.toml found; using the defaults (with HPS_LOG_LEVEL, --set server.port=9001)\nconfiguration is valid\n",
    );
    expect(result.stdout).not.toContain("server.toml: configuration is valid");
  });

  test("the shorthands are named as typed: --port and --protocol, not the --set they stand for", async () => {
    const cwd = folder("shorthands");
    const bad = await run(["--check", "--port", "abc", "--protocol", "ftp"], cwd);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--port abc: server.port must be a number (got "abc")');
    expect(bad.stderr).toContain(
      '--protocol ftp: server.protocol must be one of "http", "echo", "custom", "tcp_proxy" (got "ftp")',
    );
    expect(bad.stderr).not.toContain("--set");
    const good = await run(["--check", "--port", "9003"], cwd);
    expect(good.stdout).toBe("no server.toml found; using the defaults (with --port 9003)\nconfiguration is valid\n");
  });

  test("a root the system cannot even look at (a symbolic link loop) is one line naming http.root, not a stack trace", async () => {
    const cwd = folder("root-loop");
    symlinkSync("loop-b", join(cwd, "loop-a"));
    symlinkSync("loop-a", join(cwd, "loop-b"));
    const result = await run(["--check", "--set", "http.root=loop-a"], cwd);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "http.root: cannot be checked (ELOOP: too many symbolic links encountered, stat 'loop-a')\n" +
        "hps: 1 start-up problem; the server would not start.\n",
    );
  });

  test("with a file: names it", async () => {
    const cwd = folder("with-file");
    writeFileSync(join(cwd, "server.toml"), "[server]\nport = 9002\n");
    const result = await run(["--check"], cwd);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("server.toml: configuration is valid\n");
  });

  test("a missing http.root fails the check, as it fails start-up", async () => {
    const result = await run(["--check"], folder("no-root", false));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('http.root "./public" does not exist');
    expect(result.stderr).toContain("1 start-up problem");
    expect(result.stdout).toBe("");
  });

  test("a root that is a file, log files that cannot be opened: every problem at once", async () => {
    const cwd = folder("bad-files");
    writeFileSync(join(cwd, "not-a-dir"), "x");
    const result = await run(
      [
        "--check",
        "--set",
        "http.root=not-a-dir",
        "--set",
        `log.file=${join(cwd, "missing", "hps.log")}`,
        "--set",
        "log.access_file=public",
      ],
      cwd,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('http.root "not-a-dir" is not a directory');
    expect(result.stderr).toContain(`cannot open log.file "${join(cwd, "missing", "hps.log")}" for appending`);
    expect(result.stderr).toContain('cannot open log.access_file "public" for appending (it is a directory)');
    expect(result.stderr).toContain("3 start-up problems");
  });

  test("a log file that is a FIFO nobody reads is a start-up problem, not a start that waits for a reader", async () => {
    const cwd = folder("fifo");
    expect(Bun.spawnSync(["mkfifo", join(cwd, "access.fifo")]).exitCode).toBe(0);
    const result = await run(["--check", "--set", "log.access_file=access.fifo"], cwd);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'cannot open log.access_file "access.fifo" for appending (it is a FIFO that no process has open for reading: ' +
        "start its reader first)",
    );
  });

  test("custom.handlers: a module that exports bad handlers or does not load fails; a good one passes", async () => {
    const cwd = folder("custom");
    const base = ["--check", "--protocol", "custom"];
    const bad = await run([...base, "--set", `custom.handlers=${join(fixtures, "pool-handlers-bad.ts")}`], cwd);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('handlers key "16" is not an opcode from 0x80 to 0xFF');
    const missing = await run([...base, "--set", "custom.handlers=./nowhere.ts"], cwd);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot load the module");
    const good = await run([...base, "--set", `custom.handlers=${join(fixtures, "pool-handlers.ts")}`], cwd);
    expect(good.stderr).toBe("");
    expect(good.code).toBe(0);
  });

  test("a rule spanning settings (static_routes with the access log on) fails; warnings are printed, exit 0", async () => {
    const cwd = folder("rules");
    const conflict = await run(["--check", "--set", "http.static_routes=true"], cwd);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain("--set http.static_routes=true: http.static_routes cannot be true with");
    const warned = await run(["--check", "--set", "tcp.cork=true"], cwd);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain("warning: setting not applied on this runtime: tcp.cork = true");
  });
});

describe("--version", () => {
  test("--version and -v print hps's version, Bun's and the checkout's commit", async () => {
    const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: repo });
    const commit = git.exitCode === 0 ? git.stdout.toString().trim() : "unknown";
    const expected = `hps ${packageJson.version}\nBun ${Bun.version}\ncommit ${commit}\n`;
    for (const flag of ["--version", "-v"]) {
      const result = await run([flag], dir);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(expected);
    }
  });

  test("a compiled binary run away from the sources: the version it was built with, the commit given at build time", async () => {
    const binary = join(dir, "bin", "hps");
    const build = Bun.spawnSync(
      ["bun", "build", "--compile", main, "--outfile", binary, "--define", 'HPS_BUILD_COMMIT="feedbee"'],
      { cwd: repo, stdout: "pipe", stderr: "pipe" },
    );
    expect(build.exitCode).toBe(0);
    const cwd = folder("elsewhere", false);
    const child = Bun.spawn([binary, "--version"], { cwd, stdout: "pipe", stderr: "pipe" });
    expect(await child.exited).toBe(0);
    expect(await new Response(child.stdout).text()).toBe(
      `hps ${packageJson.version}\nBun ${Bun.version}\ncommit feedbee\n`,
    );
    rmSync(binary, { force: true });
  }, 30_000);
});

describe("start-up failures", () => {
  test("an admin port in use fails the start before anything claims to serve", async () => {
    await using holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const result = await run(
      [
        "--port",
        "0",
        "--set",
        "server.bind=127.0.0.1",
        "--set",
        "admin.bind=127.0.0.1",
        "--set",
        `admin.port=${holder.port}`,
      ],
      folder("admin-in-use"),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`hps: cannot listen on 127.0.0.1:${holder.port}: address already in use`);
    expect(result.stderr).toContain("admin.port");
    expect(result.stderr).not.toMatch(/serving|listening on/);
  });

  test("several start-up problems are printed one per line", async () => {
    const result = await run(
      ["--port", "0", "--set", "http.root=nowhere", "--set", "log.file=/nonexistent-dir/hps.log"],
      folder("two-problems"),
    );
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toStartWith('hps: http.root "nowhere" does not exist');
    expect(lines[1]).toStartWith('hps: cannot open log.file "/nonexistent-dir/hps.log" for appending');
  });
});
