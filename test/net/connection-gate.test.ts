// Connection gate: total and per-address counts, and the bound on its per-address table.
import { expect, test } from "bun:test";
import { ConnectionGate, GateResult, ZERO_ENTRIES_KEPT } from "../../src/net/connection-gate.ts";

test("limits, in order: total first, then per address", () => {
  const gate = new ConnectionGate(2, 1);
  expect(gate.enter("a")).toBe(GateResult.ADMITTED);
  expect(gate.enter("a")).toBe(GateResult.PER_IP);
  expect(gate.enter("b")).toBe(GateResult.ADMITTED);
  expect(gate.enter("c")).toBe(GateResult.MAX_CONNECTIONS);
  expect(gate.openTotal).toBe(2);
  gate.leave("a");
  expect(gate.openFrom("a")).toBe(0);
  expect(gate.enter("a")).toBe(GateResult.ADMITTED);
  expect(gate.openFrom("a")).toBe(1);
});

test("releasing an address with nothing open does not go negative", () => {
  const gate = new ConnectionGate(10, 10);
  gate.enter("a");
  gate.leave("a");
  gate.leave("a");
  gate.leave("zzz");
  expect(gate.openTotal).toBe(0);
  expect(gate.openFrom("a")).toBe(0);
});

test("a flood of distinct addresses that come and go does not grow the table without bound", () => {
  const gate = new ConnectionGate(1_000_000, 10);
  for (let i = 0; i < 50_000; i++) {
    const ip = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
    expect(gate.enter(ip)).toBe(GateResult.ADMITTED);
    gate.leave(ip);
  }
  expect(gate.openTotal).toBe(0);
  expect(gate.tableSize).toBeLessThanOrEqual(ZERO_ENTRIES_KEPT + 1);
  // With many live entries, zero entries stay at most as many as the live ones (plus the slack).
  for (let i = 0; i < 5000; i++) gate.enter(`live${i}`);
  for (let i = 0; i < 20_000; i++) {
    gate.enter(`gone${i}`);
    gate.leave(`gone${i}`);
  }
  expect(gate.openTotal).toBe(5000);
  expect(gate.tableSize).toBeLessThanOrEqual(2 * 5000 + ZERO_ENTRIES_KEPT + 1);
});
