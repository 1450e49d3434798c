// What `--version` prints: hps's version (package.json, bundled in at build time), Bun's, and the git commit.
import packageJson from "../package.json" with { type: "json" };

/**
 * The commit a compiled binary was built from: `bun build --compile --define HPS_BUILD_COMMIT='"abc1234"'` replaces
 * this name with the string; anywhere else it is not defined at all (typeof gives "undefined").
 */
declare const HPS_BUILD_COMMIT: string | undefined;
/** When scripts/build.ts built the binary (ISO 8601), defined the same way; not defined otherwise. */
declare const HPS_BUILD_TIME: string | undefined;

/** The short hash of the commit this code is, or "unknown" outside a build that set it and outside a checkout. */
export function gitCommit(): string {
  if (typeof HPS_BUILD_COMMIT === "string" && HPS_BUILD_COMMIT !== "") return HPS_BUILD_COMMIT;
  try {
    const result = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], {
      cwd: import.meta.dir,
      stdout: "pipe",
      stderr: "ignore",
    });
    const hash = result.stdout.toString().trim();
    return result.exitCode === 0 && /^[0-9a-f]{4,}$/.test(hash) ? hash : "unknown";
  } catch {
    return "unknown"; // no git, or no such directory (a compiled binary's sources are not on disk)
  }
}

/** The lines `--version` prints (and when the binary was built, for a binary built by `bun run build`). */
export function versionText(): string {
  const built = typeof HPS_BUILD_TIME === "string" && HPS_BUILD_TIME !== "" ? `built ${HPS_BUILD_TIME}\n` : "";
  return `hps ${packageJson.version}\nBun ${Bun.version}\ncommit ${gitCommit()}\n${built}`;
}
