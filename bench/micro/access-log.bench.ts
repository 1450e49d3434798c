// One access log line: formatting (combined, json) and taking it into the batch, in ns per request. The writer thread
// writes to /dev/null; the bound is large enough that nothing is dropped.
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { AccessLog, newAccessEntry } from "../../src/http/access-log.ts";

const LARGE = 1024 * 1024 * 1024;
const combined = new AccessLog({ file: "/dev/null", format: "combined", maxBufferedBytes: LARGE });
const json = new AccessLog({ file: "/dev/null", format: "json", maxBufferedBytes: LARGE });

const entry = newAccessEntry();
Object.assign(entry, {
  client: "203.0.113.7",
  method: "GET",
  target: "/assets/app.js?v=3",
  status: 200,
  bodyBytes: 1024,
  durationMicros: 84,
  referer: "https://example.com/",
  userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
});

summary(() => {
  group("access log line", () => {
    bench("combined", () => {
      entry.timeMs = Date.now();
      do_not_optimize(combined.write(entry));
    });
    bench("json", () => {
      entry.timeMs = Date.now();
      do_not_optimize(json.write(entry));
    });
  });
});

await run();
await combined.close();
await json.close();
