// http: the keep-alive request counter (peer address+port as the connection) and access-log value escaping.
import { describe, expect, test } from "bun:test";
import { escapeLogValue, formatLogTime } from "../src/http/access-log.ts";
import { KeepAliveCounter } from "../src/http/keepalive.ts";

describe("KeepAliveCounter", () => {
  test("the Nth request on a connection is the last; the count then starts again", () => {
    const counter = new KeepAliveCounter(3, 10_000);
    expect([1, 2, 3].map(() => counter.countRequest("10.0.0.1", 5000, 0))).toEqual([false, false, true]);
    expect(counter.tracked).toBe(0); // forgotten once told to close
    expect(counter.countRequest("10.0.0.1", 5000, 0)).toBe(false);
  });

  test("the same port from two addresses is two connections", () => {
    const counter = new KeepAliveCounter(2, 10_000);
    expect(counter.countRequest("10.0.0.1", 5000, 0)).toBe(false);
    expect(counter.countRequest("10.0.0.2", 5000, 0)).toBe(false);
    expect(counter.tracked).toBe(2);
    expect(counter.countRequest("10.0.0.2", 5000, 0)).toBe(true);
    expect(counter.countRequest("10.0.0.1", 5000, 0)).toBe(true);
    expect(counter.tracked).toBe(0);
  });

  test("a pair idle longer than the idle timeout is a new connection", () => {
    const counter = new KeepAliveCounter(2, 1000);
    expect(counter.countRequest("::1", 4000, 0)).toBe(false);
    expect(counter.countRequest("::1", 4000, 5000)).toBe(false); // the old connection timed out: count restarts at 1
    expect(counter.countRequest("::1", 4000, 5100)).toBe(true);
  });

  test("sweep forgets idle connections", () => {
    const counter = new KeepAliveCounter(100, 1000);
    for (let port = 1; port <= 50; port++) counter.countRequest("10.0.0.1", port, 0);
    counter.countRequest("10.0.0.1", 7, 1500);
    counter.sweep(1600);
    expect(counter.tracked).toBe(1);
  });

  test("max 1: every request is the last", () => {
    const counter = new KeepAliveCounter(1, 1000);
    expect(counter.countRequest("10.0.0.1", 1, 0)).toBe(true);
    expect(counter.countRequest("10.0.0.1", 1, 0)).toBe(true);
    expect(counter.tracked).toBe(0);
  });
});

describe("access log values", () => {
  test("quotes, backslashes, control and non-ASCII bytes become \\xHH as nginx writes them", () => {
    expect(escapeLogValue("plain /a?b=c")).toBe("plain /a?b=c");
    expect(escapeLogValue('say "hi"')).toBe("say \\x22hi\\x22");
    expect(escapeLogValue("a\\b")).toBe("a\\x5Cb");
    expect(escapeLogValue("tab\there\n")).toBe("tab\\x09here\\x0A");
    expect(escapeLogValue("é")).toBe("\\xE9");
    expect(escapeLogValue("€")).toBe("\\xE2\\x82\\xAC");
  });

  test("time is nginx's $time_local shape", () => {
    expect(formatLogTime(Date.UTC(2026, 10, 26, 1, 2, 3))).toMatch(/^\d{2}\/Nov\/2026:\d{2}:\d{2}:03 [+-]\d{4}$/);
  });
});
