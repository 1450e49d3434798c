// Benchmark tools' output: ANSI colours on a terminal only (NO_COLOR, FORCE_COLOR), never in a file or a pipe.
import { describe, expect, test } from "bun:test";
import { childColorEnv, colorOutput } from "../../bench/cli.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const RUN_MICRO = new URL("../../bench/run-micro.ts", import.meta.url).pathname;
const TINY_BENCH = new URL("../fixtures/tiny.bench.ts", import.meta.url).pathname;
const ESC = "\x1b[";

async function runMicro(argv: string[], env: Record<string, string | undefined>): Promise<string> {
  const child = Bun.spawn(argv, { cwd: REPO, env, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  expect({ exitCode, stderr: exitCode === 0 ? "" : stderr }).toEqual({ exitCode: 0, stderr: "" });
  return stdout;
}

describe("colour decision", () => {
  test.each([
    [true, {}, true],
    [false, {}, false],
    [true, { NO_COLOR: "1" }, false],
    [true, { NO_COLOR: "" }, true],
    [false, { FORCE_COLOR: "1" }, true],
    [false, { FORCE_COLOR: "3" }, true],
    [true, { FORCE_COLOR: "0" }, false],
    [true, { FORCE_COLOR: "false" }, false],
    [false, { FORCE_COLOR: "1", NO_COLOR: "1" }, true],
  ])("terminal %p with %p: colours %p", (isTTY, env, expected) => {
    expect(colorOutput({ isTTY }, env)).toBe(expected);
  });

  test("a child gets the decision in the words mitata reads", () => {
    expect(childColorEnv(false, { FORCE_COLOR: "0", PATH: "/bin" })).toEqual({ NO_COLOR: "1", PATH: "/bin" });
    expect(childColorEnv(true, { NO_COLOR: "1", PATH: "/bin" })).toEqual({ FORCE_COLOR: "1", PATH: "/bin" });
  });
});

describe("bun run bench", () => {
  test("writes no colour codes into a pipe, and mitata's colours to a terminal", async () => {
    const { FORCE_COLOR: _force, NO_COLOR: _no, ...env } = process.env;
    const [piped, terminal] = await Promise.all([
      runMicro(["bun", RUN_MICRO, TINY_BENCH], env),
      // script(1) gives the run a pseudo-terminal: the positive control that the colours exist to be removed
      runMicro(["script", "-qec", `bun ${RUN_MICRO} ${TINY_BENCH}`, "/dev/null"], env),
    ]);
    expect(piped).toContain("add");
    expect(piped).toContain("/iter");
    expect(piped).not.toContain(ESC);
    expect(terminal).toContain("/iter");
    expect(terminal).toContain(ESC);
  }, 90_000);
});
