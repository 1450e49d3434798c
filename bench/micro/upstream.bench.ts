// The HTTP proxy's client side, piece by piece: response parsing (Bun's native llhttp binding against a small
// hand-written parser), building the upstream request head, and whole round trips (fetch against the pooled
// Bun.connect client hps uses).
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { Logger } from "../../src/log.ts";
import { BodyFraming, requestHead, responseHeaders } from "../../src/upstream/http-headers.ts";
import { proxyExchange } from "../../src/upstream/http-proxy.ts";
import { ResponseParser } from "../../src/upstream/response-parser.ts";
import { UpstreamStats } from "../../src/upstream/stats.ts";
import { Upstreams } from "../../src/upstream/upstreams.ts";

/** What nginx answers for `return 200 "hello"` (the proxy benchmark's backend). */
const NGINX_HELLO = Buffer.from(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 15:17:32 GMT\r\nContent-Type: text/plain\r\n" +
    "Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
);
const BODY_CHUNK = new Uint8Array(64 * 1024);

/**
 * The hand-written alternative: status line and headers decoded as latin1, Content-Length bodies handed on as
 * views of the received bytes (no copy). Chunked bodies and every error case are left out: it is the best a small
 * parser could do, for comparison only.
 */
class HandParser {
  status = 0;
  headers: string[] = [];
  private bodyLeft = -1;
  onComplete: () => void = () => {};
  onBody: (chunk: Uint8Array) => void = () => {};

  execute(data: Uint8Array): void {
    let offset = 0;
    if (this.bodyLeft < 0) {
      const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).latin1Slice();
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) throw new Error("partial head not handled in this comparison");
      this.status = Number(text.slice(9, 12));
      const headers: string[] = [];
      let lineStart = text.indexOf("\r\n") + 2;
      let length = 0;
      while (lineStart < end) {
        const lineEnd = text.indexOf("\r\n", lineStart);
        const colon = text.indexOf(":", lineStart);
        const name = text.slice(lineStart, colon);
        const value = text.slice(colon + 1, lineEnd).trim();
        headers.push(name, value);
        if (name.length === 14 && name.toLowerCase() === "content-length") length = Number(value);
        lineStart = lineEnd + 2;
      }
      this.headers = headers;
      this.bodyLeft = length;
      offset = end + 4;
    }
    const take = Math.min(this.bodyLeft, data.byteLength - offset);
    if (take > 0) this.onBody(data.subarray(offset, offset + take));
    this.bodyLeft -= take;
    if (this.bodyLeft === 0) {
      this.bodyLeft = -1;
      this.onComplete();
    }
  }
}

let sink = 0;
const native = new ResponseParser({
  onHead: (status, _text, headers) => {
    sink += status + headers.length;
    return false;
  },
  onBody: (chunk) => {
    sink += chunk.byteLength;
  },
  onComplete: () => {
    sink += 1;
  },
});
const hand = new HandParser();
hand.onBody = (chunk) => {
  sink += chunk.byteLength;
};
hand.onComplete = () => {
  sink += hand.status + hand.headers.length;
};
const nativeBody = new ResponseParser({
  onHead: () => false,
  onBody: (chunk) => {
    sink += chunk.byteLength;
  },
  onComplete: () => {},
});
nativeBody.execute(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${1 << 40}\r\n\r\n`));
const handBody = new HandParser();
handBody.execute(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${2 ** 50}\r\n\r\n`));
handBody.onBody = (chunk) => {
  sink += chunk.byteLength;
};

summary(() => {
  group("parse a small response (nginx's hello, 170 bytes)", () => {
    bench("native llhttp (process.binding http_parser)", () => native.execute(NGINX_HELLO));
    bench("hand-written", () => hand.execute(NGINX_HELLO));
  });
});
summary(() => {
  group("parse a 64 KiB body chunk", () => {
    bench("native llhttp (copies each body piece)", () => nativeBody.execute(BODY_CHUNK));
    bench("hand-written (a view of the chunk)", () => handBody.execute(BODY_CHUNK));
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
      do_not_optimize(requestHead("GET", "/index.html", clientHeaders, forwarding, BodyFraming.NONE, 0, null)),
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
    bench("hps pooled Bun.connect client + native parser + text()", () =>
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
