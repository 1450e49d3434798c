// The per-request path of a cached file (src/http/static.ts, file-response.ts): a prebuilt Response cloned against
// one built anew, and the whole answer of a cache hit through the reused SiteRequest and ResponseSummary.
import { bench, group, run, summary } from "mitata";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configSchema } from "../../src/config/schema.ts";
import { SiteRequest, StaticFiles } from "../../src/http/static.ts";
import { ResponseSummary } from "../../src/http/status.ts";

const body = new Uint8Array(1024).fill(65);
const headers = new Headers({
  "Content-Type": "application/octet-stream",
  ETag: '"400-18c0"',
  "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
  "Accept-Ranges": "bytes",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-cache",
});
const init = { status: 200, headers };
const prebuilt = new Response(body, init);

summary(() => {
  group("a 1 KiB response with six headers", () => {
    bench("prebuilt.clone() (what a cache hit does)", () => prebuilt.clone());
    bench("new Response(body, init)", () => new Response(body, init));
  });
});

const root = mkdtempSync(join(tmpdir(), "hps-bench-response-"));
writeFileSync(join(root, "1k.bin"), body);
const site = new StaticFiles(configSchema.parse({ http: { root } }).http);
/** A reused SiteRequest for `path` with these request headers, as the handler fills one. */
function siteRequest(path: string, fields: Record<string, string>): SiteRequest {
  const query = new SiteRequest();
  query.headers = new Headers({ host: "127.0.0.1", "user-agent": "bench", ...fields });
  query.request = new Request(`http://127.0.0.1${path}`, { headers: query.headers });
  query.rawPath = path;
  query.queryStart = -1;
  return query;
}
const result = new ResponseSummary();
const plain = siteRequest("/1k.bin", {});
site.respond(plain, result); // the first request loads and caches the file
const revalidating = siteRequest("/1k.bin", { "if-none-match": result.status === 200 ? "*" : "" });

group("StaticFiles.respond on a cache hit (1 KiB)", () => {
  bench("GET -> 200", () => {
    plain.nowMs = performance.now();
    return site.respond(plain, result);
  });
  bench("GET If-None-Match -> 304", () => {
    revalidating.nowMs = performance.now();
    return site.respond(revalidating, result);
  });
});

await run();
rmSync(root, { recursive: true, force: true });
