// Every thread hps starts is named in src/entry-points.ts, so the compiled binary (scripts/build.ts) contains it and
// finds it: a `new Worker(new URL("./x.ts", import.meta.url))` in a subfolder works from source and fails in the binary.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import * as entryPoints from "../../src/entry-points.ts";
import { REPO_ROOT } from "../helpers/process.ts";

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

test("new Worker takes its URL from src/entry-points.ts everywhere in the server (the load tester runs from source)", () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(join(REPO_ROOT, "src"))) {
    const path = relative(REPO_ROOT, file);
    if (path.startsWith("src/client/") || path === "src/entry-points.ts") continue;
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(/new Worker\(([^)]*)\)/g)) {
      if (/import\.meta|new URL|["'`]/.test(match[1]!)) offenders.push(`${path}: ${match[0]}`);
    }
  }
  expect(offenders).toEqual([]);
});

test("every URL in src/entry-points.ts names a file listed for the build, and every listed file exists", () => {
  const urls = Object.values(entryPoints).filter((value): value is URL => value instanceof URL);
  const named = urls.map((url) => relative(REPO_ROOT, url.pathname)).sort();
  expect(named).toEqual([...entryPoints.THREAD_ENTRY_FILES].sort());
  for (const file of entryPoints.THREAD_ENTRY_FILES) expect(Bun.file(join(REPO_ROOT, file)).size).toBeGreaterThan(0);
});
