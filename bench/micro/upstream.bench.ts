// The HTTP proxy's client side, piece by piece: response parsing (Bun's native llhttp binding against a small
// hand-written parser), building the upstream request head, and whole round trips (fetch against the pooled
// Bun.connect client hps uses).
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { Logger } from "../../src/log.ts";
import { BodyFraming, requestHead, responseHeaders } from "../../src/upstream/http-headers.ts";
import { proxyExchange } from "../../src/upstream/http-proxy.ts";
import { NativeResponseParser } from "../../src/upstream/native-parser.ts";
import { ResponseParser } from "../../src/upstream/response-parser.ts";
import { UpstreamStats } from "../../src/upstream/stats.ts";
import { Upstreams } from "../../src/upstream/upstreams.ts";

/** What nginx answers for `return 200 "hello"` (the proxy benchmark's backend). */
const NGINX_HELLO = Buffer.from(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 15:17:32 GMT\r\nContent-Type: text/plain\r\n" +
    "Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
);
const BODY_CHUNK = new Uint8Array(64 * 1024);

let sink = 0;
const counting = {
  onHead: (status: number, _text: string, headers: string[]) => {
    sink += status + headers.length;
    return false;
  },
  onBody: (chunk: Uint8Array) => {
    sink += chunk.byteLength;
  },
  onComplete: () => {
    sink += 1;
  },
};
const native = new NativeResponseParser(counting);
const ours = new ResponseParser(counting);
// Parsers in the middle of a body that never ends: every chunk is body.
const endlessHead = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${10 ** 15 - 1}\r\n\r\n`);
const nativeBody = new NativeResponseParser(counting);
checked(nativeBody.execute(endlessHead));
const oursBody = new ResponseParser(counting);
checked(oursBody.execute(endlessHead));
const CHUNKED = Buffer.from(
  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
    '19\r\n{"items":[1,2,3,4,5,6,7]}\r\n4\r\n...]\r\n0\r\n\r\n',
);

/** Every parse in this file must succeed: a parser that failed once answers at once, which would measure nothing. */
function checked(problem: string | null | undefined): void {
  if (problem !== null && problem !== undefined) throw new Error(`bench input does not parse: ${problem}`);
}

summary(() => {
  group("parse a small response (nginx's hello, 170 bytes)", () => {
    bench("native llhttp (process.binding http_parser)", () => checked(native.execute(NGINX_HELLO)));
    bench("hps ResponseParser", () => checked(ours.execute(NGINX_HELLO)));
  });
});
summary(() => {
  group("parse a small chunked response", () => {
    bench("native llhttp (process.binding http_parser)", () => checked(native.execute(CHUNKED)));
    bench("hps ResponseParser", () => checked(ours.execute(CHUNKED)));
  });
});
summary(() => {
  group("parse a 64 KiB body chunk", () => {
    bench("native llhttp (copies each body piece)", () => checked(nativeBody.execute(BODY_CHUNK)));
    bench("hps ResponseParser (a view of the chunk)", () => checked(oursBody.execute(BODY_CHUNK)));
  });
});

const clientHeaders = new Headers({
  host: "127.0.0.1:8080",
  "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  "accept-encoding": "gzip, deflate, br",
  "accept-language": "en-US,en;q=0.9",
  connection: "keep-alive",
  cookie: "session=0123456789abcdef; theme=dark",
});
const forwarding = { peerAddress: "127.0.0.1", isTrustedPeer: false, scheme: "http" };
const rawResponseHeaders = [
  "Server",
  "nginx/1.22.1",
  "Date",
  "Fri, 04 Dec 2026 15:17:32 GMT",
  "Content-Type",
  "text/plain",
  "Content-Length",
  "5",
  "Connection",
  "keep-alive",
];
summary(() => {
  group("headers across the proxy (a browser's request, nginx's response)", () => {
    bench("request head for the server", () =>
      do_not_optimize(requestHead("GET", "/index.html", clientHeaders, forwarding, BodyFraming.NONE, 0, null, "app")),
    );
    bench("response headers for the client", () => do_not_optimize(responseHeaders(rawResponseHeaders, false)));
    bench("new Response(bytes) with those headers", () =>
      do_not_optimize(
        new Response(NGINX_HELLO.subarray(0, 5), { headers: responseHeaders(rawResponseHeaders, false) }),
      ),
    );
  });
});

// Whole round trips against a local Bun backend, CONCURRENCY at a time: what a proxy's client side costs per request.
const CONCURRENCY = 32;
const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("hello") });
const url = `http://127.0.0.1:${backend.port}/`;
const upstreams = new Upstreams(
  [
    {
      name: "bench",
      servers: [{ address: `127.0.0.1:${backend.port}`, weight: 1, max_connections: 0 }],
      strategy: "round_robin",
      keepalive_connections: 64,
      keepalive_timeout_s: 60,
      connect_timeout_s: 2,
      read_timeout_s: 30,
      retries: 1,
      max_fails: 3,
      fail_timeout_s: 10,
      health_check_path: "",
      health_check_interval_s: 5,
    },
  ],
  { stats: UpstreamStats.create(), logger: Logger.silent(), publishesGauges: false },
);
const group_ = upstreams.group("bench")!;
const request = new Request(url, { headers: clientHeaders });
const client = { ...forwarding, clientAddress: "127.0.0.1", maxRequestBytes: 1 << 20 };

async function batch(one: () => Promise<unknown>): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < CONCURRENCY; i++) pending.push(one());
  await Promise.all(pending);
}

summary(() => {
  group(`round trips to a local Bun server, ${CONCURRENCY} at a time (time per batch)`, () => {
    bench("fetch (keep-alive) + text()", () => batch(() => fetch(url).then((response) => response.text())));
    bench("hps pooled Bun.connect client (ProxyExchange) + text()", () =>
      batch(() =>
        proxyExchange(group_, request, "/", client, performance.now())
          .run()
          .then((response) => response.text()),
      ),
    );
  });
});

await run();
upstreams.stop();
backend.stop(true);
if (sink === -1) console.log(sink);
