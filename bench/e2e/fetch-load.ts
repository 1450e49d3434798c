// A load generator over Bun's fetch, for protocols the other tools here do not speak (HTTP/3; HTTP/2 for comparison).
//
// Usage: bun bench/e2e/fetch-load.ts URL --protocol http3|http2 [--in-flight 100] [--seconds 5] [--warmup 1]
// Keeps `--in-flight` requests outstanding (Bun multiplexes them over its connection to the origin) for the given
// time after a warm-up, checks each answer is a 200 with a body, and prints one JSON line:
//   {"requests": N, "errors": E, "seconds": S, "bodyBytes": B}
// Certificates are not verified: Bun's HTTP/3 client cannot be given a private CA (docs/upstream/fetch-http3-ca.md),
// and both protocols are treated alike.
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    protocol: { type: "string", default: "http2" },
    "in-flight": { type: "string", default: "100" },
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
  },
  allowPositionals: true,
});
const url = positionals[0];
const protocol = values.protocol;
const inFlight = Number(values["in-flight"]);
const seconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);
if (url === undefined || (protocol !== "http2" && protocol !== "http3") || !(inFlight >= 1) || !(seconds > 0)) {
  process.stderr.write("usage: bun bench/e2e/fetch-load.ts URL --protocol http3|http2 [--in-flight N] [--seconds S]\n");
  process.exit(2);
}

const init = { protocol, tls: { rejectUnauthorized: false } } as RequestInit;
let measuring = false;
let requests = 0;
let errors = 0;
let bodyBytes = 0;
const startMs = performance.now();
const warmupEndMs = startMs + warmupSeconds * 1000;
const endMs = warmupEndMs + seconds * 1000;

/** One of the `inFlight` loops: a request after each answer, until the end. */
async function loop(): Promise<void> {
  while (performance.now() < endMs) {
    try {
      const response = await fetch(url!, init);
      const body = await response.arrayBuffer();
      if (!measuring) continue;
      if (response.status === 200 && body.byteLength > 0) {
        requests++;
        bodyBytes += body.byteLength;
      } else errors++;
    } catch {
      if (measuring) errors++;
    }
  }
}

const warmup = setTimeout(() => {
  measuring = true;
}, warmupSeconds * 1000);
await Promise.all(Array.from({ length: inFlight }, loop));
clearTimeout(warmup);
const measuredSeconds = (performance.now() - Math.max(warmupEndMs, startMs)) / 1000;
process.stdout.write(`${JSON.stringify({ requests, errors, seconds: measuredSeconds, bodyBytes })}\n`);
