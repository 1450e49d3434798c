// http: the connection table (peer address+port as the connection: request counts, admission slots) and access-log value escaping.
import { describe, expect, test } from "bun:test";
import { escapeLogValue, formatLogTime } from "../../src/http/access-log.ts";
import { KeepAliveCounter } from "../../src/http/keepalive.ts";

describe("KeepAliveCounter", () => {
  test("the Nth request on a connection is the last; the count then starts again", () => {
    const counter = new KeepAliveCounter(3, 10_000);
    expect([1, 2, 3].map(() => counter.countPeerRequest("10.0.0.1", 5000, 0))).toEqual([false, false, true]);
    expect(counter.tracked).toBe(0); // forgotten once told to close
    expect(counter.countPeerRequest("10.0.0.1", 5000, 0)).toBe(false);
  });

  test("the same port from two addresses is two connections", () => {
    const counter = new KeepAliveCounter(2, 10_000);
    expect(counter.countPeerRequest("10.0.0.1", 5000, 0)).toBe(false);
    expect(counter.countPeerRequest("10.0.0.2", 5000, 0)).toBe(false);
    expect(counter.tracked).toBe(2);
    expect(counter.countPeerRequest("10.0.0.2", 5000, 0)).toBe(true);
    expect(counter.countPeerRequest("10.0.0.1", 5000, 0)).toBe(true);
    expect(counter.tracked).toBe(0);
  });

  test("a pair idle longer than the idle timeout is a new connection", () => {
    const counter = new KeepAliveCounter(2, 1000);
    expect(counter.countPeerRequest("::1", 4000, 0)).toBe(false);
    expect(counter.countPeerRequest("::1", 4000, 5000)).toBe(false); // the old connection timed out: count restarts at 1
    expect(counter.countPeerRequest("::1", 4000, 5100)).toBe(true);
  });

  test("sweep forgets idle connections", () => {
    const counter = new KeepAliveCounter(100, 1000);
    for (let port = 1; port <= 50; port++) counter.countPeerRequest("10.0.0.1", port, 0);
    counter.countPeerRequest("10.0.0.1", 7, 1500);
    counter.sweep(1600, 1);
    expect(counter.tracked).toBe(1);
  });

  test("max 1: every request is the last", () => {
    const counter = new KeepAliveCounter(1, 1000);
    expect(counter.countPeerRequest("10.0.0.1", 1, 0)).toBe(true);
    expect(counter.countPeerRequest("10.0.0.1", 1, 0)).toBe(true);
    expect(counter.tracked).toBe(0);
  });
});

describe("KeepAliveCounter as the connection table for admission", () => {
  test("an admitted entry releases its client address once, when told to close", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(2, 10_000, (clientAddress) => released.push(clientAddress));
    expect(table.find("10.0.0.1", 5000, 0)).toBeNull();
    const state = table.open("10.0.0.1", 5000, "203.0.113.9", true, 0);
    expect(table.find("10.0.0.1", 5000, 1)).toBe(state);
    expect(table.countRequest(state, 1)).toBe(false);
    expect(table.countRequest(state, 2)).toBe(true);
    table.forget(state);
    table.forget(state); // twice is harmless
    expect(released).toEqual(["203.0.113.9"]);
    expect(table.tracked).toBe(0);
  });

  test("entries that were not admitted release nothing", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(1, 10_000, (clientAddress) => released.push(clientAddress));
    table.forget(table.open("10.0.0.1", 1, "10.0.0.1", false, 0));
    expect(released).toEqual([]);
  });

  test("no request limit (0): requests never close the connection; only the slot is tracked", () => {
    const table = new KeepAliveCounter(0, 10_000);
    const state = table.open("10.0.0.1", 1, "10.0.0.1", true, 0);
    for (let i = 0; i < 100; i++) expect(table.countRequest(state, i)).toBe(false);
    expect(table.tracked).toBe(1);
  });

  test("idle past the timeout: find forgets the entry (slot released) and reports a new connection", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(0, 1000, (clientAddress) => released.push(clientAddress));
    table.open("10.0.0.1", 7, "10.0.0.1", true, 0);
    expect(table.find("10.0.0.1", 7, 500)).not.toBeNull();
    expect(released).toEqual([]);
    expect(table.find("10.0.0.1", 7, 2000)).toBeNull();
    expect(released).toEqual(["10.0.0.1"]);
    expect(table.tracked).toBe(0);
  });

  test("sweep and clear release every forgotten admitted slot, including ones sharing a port", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(0, 1000, (clientAddress) => released.push(clientAddress));
    table.open("10.0.0.1", 7, "a", true, 0);
    table.open("10.0.0.2", 7, "b", true, 0);
    table.open("10.0.0.3", 7, "c", true, 900);
    table.open("10.0.0.1", 8, "d", true, 0);
    table.sweep(1500, 1);
    expect(released.sort()).toEqual(["a", "b", "d"]);
    expect(table.find("10.0.0.3", 7, 1500)).not.toBeNull();
    table.clear();
    expect(released.sort()).toEqual(["a", "b", "c", "d"]);
    expect(table.tracked).toBe(0);
  });
});

describe("KeepAliveCounter: connections busy with a long response", () => {
  const timing = { slowestClientBytesPerSecond: 1000, watchedBodyBytes: 1_000_000 };

  test("a response keeps its connection from being idle until its estimated end (body bytes at the slowest rate)", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(0, 1000, (clientAddress) => released.push(clientAddress), timing);
    const state = table.open("10.0.0.1", 7, "10.0.0.1", true, 0);
    table.countRequest(state, 0);
    table.responding(state, 10_000, 0, new Request("http://t/big")); // 10 s at 1000 B/s
    table.sweep(5000, 1);
    expect(table.find("10.0.0.1", 7, 9000)).toBe(state);
    table.sweep(10_900, 1);
    expect(released).toEqual([]);
    table.sweep(11_100, 1); // idle 1.1 s past the estimated end
    expect(released).toEqual(["10.0.0.1"]);
  });

  test("a sweep that sees no response in progress ends every busy time: idle counts from then", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(0, 1000, (clientAddress) => released.push(clientAddress), timing);
    const state = table.open("10.0.0.1", 7, "10.0.0.1", true, 0);
    table.responding(state, 1_000_000, 0, new Request("http://t/big")); // estimated 1000 s
    table.sweep(3000, 0); // nothing in progress: sent by now
    expect(released).toEqual([]);
    table.sweep(3900, 1);
    expect(released).toEqual([]);
    table.sweep(4100, 1);
    expect(released).toEqual(["10.0.0.1"]);
  });

  test("a new request on the connection ends the previous response's busy time", () => {
    const table = new KeepAliveCounter(0, 1000, null, timing);
    const state = table.open("10.0.0.1", 7, "10.0.0.1", true, 0);
    table.responding(state, 1_000_000, 0, new Request("http://t/big"));
    table.countRequest(state, 100);
    table.sweep(1200, 1);
    expect(table.tracked).toBe(0);
  });

  test("a long response's request signal aborting (the client went away) forgets the connection at once", () => {
    const released: string[] = [];
    const table = new KeepAliveCounter(0, 1000, (clientAddress) => released.push(clientAddress), timing);
    const state = table.open("10.0.0.1", 7, "10.0.0.1", true, 0);
    const shortAbort = new AbortController();
    table.responding(state, 999_999, 0, new Request("http://t/short", { signal: shortAbort.signal }));
    shortAbort.abort(); // under watchedBodyBytes: not watched
    expect(released).toEqual([]);
    const longAbort = new AbortController();
    table.responding(state, 1_000_000, 0, new Request("http://t/long", { signal: longAbort.signal }));
    longAbort.abort();
    expect(released).toEqual(["10.0.0.1"]);
    expect(table.tracked).toBe(0);
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
