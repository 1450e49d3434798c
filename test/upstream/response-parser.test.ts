// The upstream response parser: checked against Bun's native llhttp on thousands of generated responses split at
// random places, and on its own for the framing rules it must refuse.
import { describe, expect, test } from "bun:test";
import { NativeResponseParser } from "../../src/upstream/native-parser.ts";
import {
  BODY_COPY_MAX_BYTES,
  MAX_HEAD_BYTES,
  ResponseParser,
  type ResponseEvents,
} from "../../src/upstream/response-parser.ts";

interface Parsed {
  status: number;
  statusText: string;
  headers: string[];
  keepAlive: boolean;
  body: number[];
  complete: boolean;
}

/** Records what a parser reports; `skipBodies[i]` answers onHead for the i-th final response (HEAD requests). */
function recorder(skipBodies: boolean[] = []) {
  const messages: Parsed[] = [];
  let finals = 0;
  const events: ResponseEvents = {
    onHead(status, statusText, headers, keepAlive) {
      messages.push({ status, statusText, headers: [...headers], keepAlive, body: [], complete: false });
      if (status < 200) return false;
      return skipBodies[finals++] === true;
    },
    onBody(chunk) {
      const body = messages[messages.length - 1]!.body;
      for (const byte of chunk) body.push(byte);
    },
    onComplete() {
      messages[messages.length - 1]!.complete = true;
    },
  };
  return { messages, events };
}

/** A seeded generator (xorshift) so failures reproduce. */
function random(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!,
  };
}

const NAMES = ["Content-Type", "X-Request-Id", "Set-Cookie", "Cache-Control", "ETag", "X-Empty", "Vary", "server"];
const STATUSES = [200, 201, 204, 206, 301, 302, 304, 400, 404, 418, 500, 503];

/** One generated exchange: the bytes of several responses on one connection, and which answer HEAD requests. */
function generate(seed: number): { bytes: Uint8Array; skipBodies: boolean[] } {
  const r = random(seed);
  const parts: Buffer[] = [];
  const skipBodies: boolean[] = [];
  const count = 1 + r.int(4);
  for (let m = 0; m < count; m++) {
    const isLast = m === count - 1;
    if (r.next() < 0.15)
      parts.push(
        Buffer.from(r.pick(["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"])),
      );
    const status = r.pick(STATUSES);
    const version = r.next() < 0.85 ? "1.1" : "1.0";
    const isHead = r.next() < 0.1;
    skipBodies.push(isHead);
    let head = `HTTP/${version} ${status} ${r.pick(["OK", "", "Some Reason Phrase", "Not Found"])}\r\n`;
    for (let h = r.int(6); h > 0; h--) {
      const name = r.pick(NAMES);
      const value = name === "X-Empty" ? "" : `v${r.int(100000)}${r.pick(["", " a b", "\t", "; q=0.5"])}`;
      head += `${name}:${r.pick([" ", "", "  "])}${value}\r\n`;
    }
    const bodyLength = r.int(3) === 0 ? 0 : r.int(5000);
    const body = Buffer.alloc(bodyLength);
    for (let i = 0; i < bodyLength; i++) body[i] = r.int(256);
    const hasBody = status !== 204 && status !== 304 && !isHead;
    const framing = isLast && hasBody && r.next() < 0.2 ? "close" : r.pick(["length", "chunked"]);
    if (version === "1.0" ? r.next() < 0.6 : r.next() < 0.2) {
      head += version === "1.0" ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    }
    if (framing === "length") {
      head += `Content-Length: ${bodyLength}\r\n\r\n`;
      parts.push(Buffer.from(head, "latin1"));
      if (hasBody) parts.push(body);
    } else if (framing === "chunked") {
      head += "Transfer-Encoding: chunked\r\n\r\n";
      parts.push(Buffer.from(head, "latin1"));
      if (hasBody) {
        let at = 0;
        while (at < bodyLength) {
          const size = Math.min(bodyLength - at, 1 + r.int(1500));
          parts.push(Buffer.from(`${size.toString(16)}${r.next() < 0.2 ? ";ext=1" : ""}\r\n`));
          parts.push(body.subarray(at, at + size));
          parts.push(Buffer.from("\r\n"));
          at += size;
        }
        parts.push(Buffer.from(r.next() < 0.2 ? "0\r\nX-Trailer: t\r\n\r\n" : "0\r\n\r\n"));
      }
    } else {
      parts.push(Buffer.from(`${head}\r\n`, "latin1"));
      parts.push(body);
    }
    if (framing === "close") break;
  }
  return { bytes: Buffer.concat(parts), skipBodies };
}

/** Feeds `bytes` split at `cuts` random places, then ends the connection. */
function feed(
  parser: { execute(data: Uint8Array): string | null; finish(): string | null },
  bytes: Uint8Array,
  seed: number,
  cuts: number,
): string | null {
  const r = random(seed * 7 + 1);
  const points = [...new Set(Array.from({ length: cuts }, () => r.int(bytes.length)))].sort((a, b) => a - b);
  let at = 0;
  for (const point of [...points, bytes.length]) {
    if (point <= at) continue;
    // A fresh copy per piece, as a socket hands over a fresh buffer per read.
    const problem = parser.execute(bytes.slice(at, point));
    if (problem !== null) return problem;
    at = point;
  }
  return parser.finish();
}

describe("response parser against llhttp", () => {
  test("3000 generated connections, split at random places, give the same responses", () => {
    for (let seed = 1; seed <= 3000; seed++) {
      const { bytes, skipBodies } = generate(seed);
      const ours = recorder(skipBodies);
      const theirs = recorder(skipBodies);
      const cuts = seed % 5 === 0 ? 0 : 1 + (seed % 40);
      const ourProblem = feed(new ResponseParser(ours.events), bytes, seed, cuts);
      const theirProblem = feed(new NativeResponseParser(theirs.events), bytes, seed, cuts);
      if (ourProblem !== null || theirProblem !== null) {
        throw new Error(`seed ${seed}: ours ${ourProblem}, llhttp ${theirProblem}`);
      }
      if (JSON.stringify(ours.messages) !== JSON.stringify(theirs.messages)) {
        expect({ seed, messages: ours.messages }).toEqual({ seed, messages: theirs.messages });
      }
    }
  });
});

function parseAll(text: string | Uint8Array, skipBodies: boolean[] = []) {
  const record = recorder(skipBodies);
  const parser = new ResponseParser(record.events);
  const problem = parser.execute(typeof text === "string" ? Buffer.from(text, "latin1") : text);
  return { problem, messages: record.messages, finish: () => parser.finish() };
}

describe("response parser framing rules", () => {
  test("body pieces: a chunk that is all body is passed on as is, a large piece as a view, a small one as a copy", () => {
    const pieces: Uint8Array[] = [];
    const parser = new ResponseParser({
      onHead: () => false,
      onBody: (chunk) => pieces.push(chunk),
      onComplete: () => {},
    });
    const large = BODY_COPY_MAX_BYTES + 1;
    const first = Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${2 * large + 5}\r\n\r\n`),
      Buffer.alloc(large, 1),
    ]);
    const middle = Buffer.alloc(large, 2);
    const last = Buffer.from("helloHTTP/1.1 204 No Content\r\n\r\n");
    for (const chunk of [first, middle, last]) expect(parser.execute(chunk)).toBeNull();
    expect(pieces.map((piece) => piece.byteLength)).toEqual([large, large, 5]);
    // After the head: a view of the received bytes, not a copy.
    expect(pieces[0]!.buffer).toBe(first.buffer);
    expect(pieces[0]!.byteOffset).toBe(first.byteOffset + first.byteLength - large);
    // All body: the chunk itself.
    expect(pieces[1]).toBe(middle);
    // Five bytes before the next response: a copy, which later changes to the received buffer do not reach.
    expect(pieces[2]!.buffer).not.toBe(last.buffer);
    last.fill(0);
    expect(Buffer.from(pieces[2]!).toString()).toBe("hello");
  });

  test("refuses what would make framing ambiguous or the head unreadable", () => {
    const bad = [
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 200OK\r\n\r\n",
      "HTTP/1.1 2x0 OK\r\n\r\n",
      "HTTP/1.1 099 Low\r\n\r\n",
      "HTTP/1.1 600 High\r\n\r\n",
      "HTTP/1.2 200 OK\r\n\r\n",
      "HTTP/1.1 200\tOK\r\n\r\n",
      "SSH-2.0-OpenSSH_9.2\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
    ];
    for (const text of bad) expect({ text, problem: parseAll(text).problem }).not.toEqual({ text, problem: null });
  });

  test("the status code and reason phrase are passed on as sent", () => {
    const lines: Array<[string, number, string]> = [
      ["HTTP/1.1 200 OK", 200, "OK"],
      ["HTTP/1.1 200 OKAY", 200, "OKAY"],
      ["HTTP/1.1 200 Ok", 200, "Ok"],
      ["HTTP/1.1 404 Not Found", 404, "Not Found"],
      ["HTTP/1.0 503 ", 503, ""],
      ["HTTP/1.1 204", 204, ""],
      ["HTTP/1.1 599 Whatever", 599, "Whatever"],
    ];
    for (const [line, status, statusText] of lines) {
      const { problem, messages } = parseAll(`${line}\r\nContent-Length: 0\r\n\r\n`);
      expect({ line, problem, status: messages[0]?.status, statusText: messages[0]?.statusText }).toEqual({
        line,
        problem: null,
        status,
        statusText,
      });
    }
  });

  test("a head over MAX_HEAD_BYTES is refused, whether it arrives at once or in pieces", () => {
    const huge = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
    expect(parseAll(huge).problem).toContain("over");
    const parser = new ResponseParser(recorder().events);
    let problem: string | null = null;
    for (let at = 0; at < huge.length && problem === null; at += 1000)
      problem = parser.execute(Buffer.from(huge.slice(at, at + 1000)));
    expect(problem).toContain("over");
  });

  test("Transfer-Encoding wins over Content-Length and the connection is not reused; TE not ending in chunked reads until close", () => {
    const both = parseAll(
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    expect(both.problem).toBeNull();
    expect(both.messages[0]).toMatchObject({ keepAlive: false, complete: true, body: [97, 98, 99] });
    const gzip = parseAll("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes");
    expect(gzip.messages[0]).toMatchObject({ keepAlive: false, complete: false });
    expect(gzip.finish()).toBeNull();
    expect(gzip.messages[0]!.complete).toBe(true);
  });

  test("repeated equal Content-Length values are one; HEAD answers, 204 and 304 have no body", () => {
    expect(parseAll("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok").messages[0]).toMatchObject({
      body: [111, 107],
    });
    const head = parseAll("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", [true]);
    expect(head.messages.map((m) => [m.status, m.complete, m.body.length])).toEqual([
      [200, true, 0],
      [204, true, 0],
    ]);
  });

  test("a connection closed mid-response is an error, between responses it is not", () => {
    expect(parseAll("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").finish()).not.toBeNull();
    expect(parseAll("HTTP/1.1 200 OK\r\nContent-").finish()).not.toBeNull();
    expect(parseAll("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").finish()).toBeNull();
  });
});
