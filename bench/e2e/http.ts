// Whole-server HTTP benchmark: the HTTP cases of bench/e2e/run.ts (hps vs raw Bun and nginx in three configurations).
//
// Usage: bun bench/e2e/http.ts [--rounds 3] [--seconds 5] [--warmup 1] [--only 1k,64k,256m,256m-load,pipe] [any other bench:e2e option]
// Same servers, pinning, alternation and table as `bun run bench:e2e --only '^http-'`; kept so this entry keeps working.
import { e2eMain } from "./run.ts";

const CASE_IDS: Record<string, string> = {
  "1k": "http-1k",
  "64k": "http-64k",
  "256m": "http-256m",
  "256m-load": "http-256m-load",
  pipe: "http-1k-pipelined",
};

const argv = Bun.argv.slice(2);
const onlyIndex = argv.indexOf("--only");
let only = "^http-";
if (onlyIndex >= 0) {
  const keys = (argv[onlyIndex + 1] ?? "").split(",").filter((key) => key !== "");
  const unknown = keys.filter((key) => CASE_IDS[key] === undefined);
  if (unknown.length > 0) {
    process.stderr.write(`http bench: --only takes ${Object.keys(CASE_IDS).join(",")} (got ${unknown.join(",")})\n`);
    process.exit(2);
  }
  only = `^(${keys.map((key) => CASE_IDS[key]).join("|")})$`;
  argv.splice(onlyIndex, 2);
}
process.exitCode = await e2eMain([...argv, "--only", only]);
