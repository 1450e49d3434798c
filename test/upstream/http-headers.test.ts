// Headers across the proxy, field by field: what the client gets from a server's response head whatever the case
// of its field names (nginx and most servers capitalize them; Bun sends them lower-cased).
import { describe, expect, test } from "bun:test";
import { equalsIgnoringCase } from "../../src/upstream/ascii.ts";
import { responseHeaders } from "../../src/upstream/http-headers.ts";

describe("response headers for the client", () => {
  test("hop-by-hop fields are removed whatever the case of their names; Via is extended", () => {
    const raw = [
      ["Server", "nginx"],
      ["CONNECTION", "X-Hop, Keep-Alive"],
      ["X-HOP", "secret"],
      ["Keep-Alive", "timeout=5"],
      ["Transfer-Encoding", "chunked"],
      ["Content-Length", "5"],
      ["TE", "trailers"],
      ["Trailer", "X-Sum"],
      ["Upgrade", "h2c"],
      ["Proxy-Connection", "keep-alive"],
      ["VIA", "1.0 a"],
      ["Via", "1.1 b"],
      ["X-End", "kept"],
    ].flat(); // the parser's list: name, value, name, value...
    const headers = responseHeaders(raw, false);
    expect([...headers.entries()]).toEqual([
      ["server", "nginx"],
      ["via", "1.0 a, 1.1 b, 1.1 hps"],
      ["x-end", "kept"],
    ]);
    // A streamed body (or HEAD) keeps the server's Content-Length.
    expect(responseHeaders(raw, true).get("content-length")).toBe("5");
  });

  test("Connection: keep-alive and close name no other field; a field named there is removed", () => {
    const keepAlive = responseHeaders(["Connection", "Keep-Alive", "Close", "1", "X-A", "a"], false);
    expect([...keepAlive.keys()]).toEqual(["close", "via", "x-a"]);
    const close = responseHeaders(["Connection", "close", "Close", "1", "X-A", "a"], false);
    expect([...close.keys()]).toEqual(["via", "x-a"]);
    const both = responseHeaders(["Connection", "x-a", "Connection", "keep-alive", "X-A", "a", "X-B", "b"], false);
    expect([...both.keys()]).toEqual(["via", "x-b"]);
  });
});

describe("equalsIgnoringCase", () => {
  test("compares ASCII letters without case, everything else exactly", () => {
    expect(equalsIgnoringCase("Content-Length", "content-length")).toBe(true);
    expect(equalsIgnoringCase("CONTENT-LENGTH", "content-length")).toBe(true);
    expect(equalsIgnoringCase("content-length", "content-length")).toBe(true);
    expect(equalsIgnoringCase("Content_Length", "content-length")).toBe(false);
    expect(equalsIgnoringCase("Content-Lengt", "content-length")).toBe(false);
    expect(equalsIgnoringCase("Content-Lengths", "content-length")).toBe(false);
    // "@" and "[" sit next to the capitals: only A-Z are folded.
    expect(equalsIgnoringCase("@", "`")).toBe(false);
    expect(equalsIgnoringCase("[", "{")).toBe(false);
    // Non-ASCII letters that lower-case to ASCII (the Kelvin sign) are not letters of a token.
    expect(equalsIgnoringCase("\u212Aeep-alive", "keep-alive")).toBe(false);
  });
});
