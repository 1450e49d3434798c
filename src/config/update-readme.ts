// Rewrites the settings reference in README.md (between the settings markers) and server.toml from the schema.
import { join } from "node:path";
import { configToToml, settingsReference } from "./print.ts";
import { DEFAULT_CONFIG } from "./schema.ts";

const root = join(import.meta.dir, "..", "..");
const START = "<!-- settings:start -->";
const END = "<!-- settings:end -->";
const SERVER_TOML_HEADER = `# hps configuration. Every setting is listed with its meaning, unit and default.
# A missing key takes its default; a missing file means all defaults.
# Override with the environment (HPS_SERVER_PORT=9000) or the command line (--set server.port=9000, --port 9000).
# Check a file with: bun run server --check --config server.toml

`;

const readmePath = join(root, "README.md");
const readme = await Bun.file(readmePath).text();
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (start < 0 || end < start) throw new Error(`README.md must contain ${START} and ${END}`);
await Bun.write(readmePath, `${readme.slice(0, start + START.length)}\n${settingsReference()}\n${readme.slice(end)}`);
await Bun.write(join(root, "server.toml"), SERVER_TOML_HEADER + configToToml(DEFAULT_CONFIG));
console.log("README.md settings reference and server.toml regenerated from src/config/schema.ts");
