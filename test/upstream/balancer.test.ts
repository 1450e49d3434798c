// Load-balancing strategies on their own: proportions, spread, consistency, and which servers they may pick.
import { describe, expect, test } from "bun:test";
import {
  LeastConnections,
  RandomTwoChoices,
  RendezvousHash,
  SmoothRoundRobin,
  type Balancer,
} from "../../src/upstream/balancer.ts";
import { UpstreamServer } from "../../src/upstream/server.ts";
import { upstreamSettings } from "../helpers/upstream.ts";

function servers(weights: readonly number[], base = 9000): UpstreamServer[] {
  const settings = upstreamSettings(weights.map((weight, i) => ({ address: `10.0.0.${i + 1}:${base + i}`, weight })));
  return settings.servers.map((server) => new UpstreamServer(server, settings));
}

/** A deterministic uniform source (xorshift), so random_two tests do not depend on luck. */
function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
}

function counts(balancer: Balancer, list: UpstreamServer[], picks: number, key = (i: number) => `k${i}`) {
  const seen = new Map<UpstreamServer, number>();
  for (let i = 0; i < picks; i++) {
    const server = balancer.pick(list, key(i), [], 0)!;
    seen.set(server, (seen.get(server) ?? 0) + 1);
  }
  return list.map((server) => seen.get(server) ?? 0);
}

describe("smooth weighted round robin", () => {
  test("weights 1:2 give exactly 1:2 over 3000 picks and over every window of 3", () => {
    const list = servers([1, 2]);
    const balancer = new SmoothRoundRobin();
    const order = Array.from({ length: 3000 }, () => list.indexOf(balancer.pick(list, "", [], 0)!));
    expect(order.filter((i) => i === 0).length).toBe(1000);
    expect(order.filter((i) => i === 1).length).toBe(2000);
    for (let start = 0; start + 3 <= order.length; start++) {
      expect(order.slice(start, start + 3).filter((i) => i === 0).length).toBe(1);
    }
  });

  test("is smooth: weights 5:1:1 never send more than 2 in a row to the heavy server", () => {
    const list = servers([5, 1, 1]);
    const balancer = new SmoothRoundRobin();
    const order = Array.from({ length: 70 }, () => list.indexOf(balancer.pick(list, "", [], 0)!));
    expect(order.slice(0, 7)).toEqual([0, 0, 1, 0, 2, 0, 0]); // nginx's documented sequence for 5:1:1
    expect(counts(new SmoothRoundRobin(), list, 700)).toEqual([500, 100, 100]);
  });

  test("skips excluded, ejected, removed and full servers", () => {
    const list = servers([1, 1, 1, 1]);
    const balancer = new SmoothRoundRobin();
    list[1]!.health.checked(false);
    list[2]!.isRemoved = true;
    list[3]!.maxConnections = 1;
    list[3]!.connections = 1;
    for (let i = 0; i < 10; i++) expect(balancer.pick(list, "", [], 0)).toBe(list[0]!);
    expect(balancer.pick(list, "", [list[0]!], 0)).toBeNull();
    list[3]!.idleConnections = 1; // a full server with an idle pooled connection can still take a request
    expect(balancer.pick(list, "", [list[0]!], 0)).toBe(list[3]!);
  });
});

describe("least_conn", () => {
  test("picks the server with the fewest in flight per weight; ties rotate", () => {
    const list = servers([1, 1, 2]);
    const balancer = new LeastConnections();
    list[0]!.inFlight = 3;
    list[1]!.inFlight = 1;
    list[2]!.inFlight = 3; // 1.5 per weight
    expect(balancer.pick(list, "", [], 0)).toBe(list[1]!);
    list[1]!.inFlight = 5;
    expect(balancer.pick(list, "", [], 0)).toBe(list[2]!);
    for (const server of list) server.inFlight = 0;
    expect(new Set(Array.from({ length: 3 }, () => balancer.pick(list, "", [], 0))).size).toBe(3);
  });

  test("while requests start and finish at random, every pick goes to a least loaded server", () => {
    const list = servers([1, 1, 1, 1]);
    const balancer = new LeastConnections();
    const random = seeded(7);
    const active: UpstreamServer[] = [];
    for (let step = 0; step < 10_000; step++) {
      if (active.length > 0 && random() < 0.5) {
        const index = Math.floor(random() * active.length);
        active[index]!.inFlight -= 1;
        active.splice(index, 1);
      } else {
        const least = Math.min(...list.map((s) => s.inFlight));
        const server = balancer.pick(list, "", [], 0)!;
        expect(server.inFlight).toBe(least);
        server.inFlight += 1;
        active.push(server);
      }
    }
  });
});

describe("random_two", () => {
  test("of the two drawn, the one with fewer in flight wins; draws follow weights", () => {
    const list = servers([1, 3]);
    const balancer = new RandomTwoChoices(seeded(3));
    list[1]!.inFlight = 10;
    for (let i = 0; i < 20; i++) expect(balancer.pick(list, "", [], 0)).toBe(list[0]!);
    list[1]!.inFlight = 0;
    list[0]!.inFlight = 0;
    const single = servers([1, 3, 1, 1]);
    const tally = counts(new RandomTwoChoices(seeded(11)), single, 6000);
    // With equal in-flight counts the first draw wins: proportions follow the weights (1:3:1:1), within noise.
    expect(tally[1]! / 6000).toBeGreaterThan(0.4);
    expect(tally[1]! / 6000).toBeLessThan(0.6);
  });

  test("one candidate left: it is chosen; none: null", () => {
    const list = servers([1, 1]);
    const balancer = new RandomTwoChoices(seeded(5));
    expect(balancer.pick(list, "", [list[0]!], 0)).toBe(list[1]!);
    expect(balancer.pick(list, "", list, 0)).toBeNull();
  });
});

describe("ip_hash (rendezvous)", () => {
  const clients = Array.from(
    { length: 20_000 },
    (_, i) => `${(i * 7919) % 223}.${(i * 104_729) % 251}.${i % 256}.${(i >> 8) % 256}`,
  );

  function assignment(balancer: Balancer, list: UpstreamServer[]): Map<string, UpstreamServer> {
    return new Map(clients.map((client) => [client, balancer.pick(list, client, [], 0)!]));
  }

  test("the same client always lands on the same server; load follows weight", () => {
    const list = servers([1, 1, 2]);
    const balancer = new RendezvousHash();
    const first = assignment(balancer, list);
    const second = assignment(balancer, list);
    for (const client of clients) expect(second.get(client)).toBe(first.get(client)!);
    const share = list.map((server) => [...first.values()].filter((s) => s === server).length / clients.length);
    expect(share[0]!).toBeCloseTo(0.25, 1);
    expect(share[2]!).toBeCloseTo(0.5, 1);
  });

  test("adding a server to n remaps at most 1/n of the clients (measured: close to 1/(n+1)), all to the new one", () => {
    for (const n of [2, 3, 5, 8]) {
      const before = servers(Array(n).fill(1));
      const after = [...before, ...servers([1], 9500)];
      const balancer = new RendezvousHash();
      const old = assignment(balancer, before);
      const now = assignment(balancer, after);
      let moved = 0;
      for (const client of clients) {
        if (now.get(client) === old.get(client)) continue;
        moved++;
        expect(now.get(client)).toBe(after[n]!);
      }
      const fraction = moved / clients.length;
      console.log(
        `ip_hash: ${n} -> ${n + 1} servers remapped ${(fraction * 100).toFixed(2)} % (ideal ${(100 / (n + 1)).toFixed(2)} %)`,
      );
      expect(fraction).toBeLessThanOrEqual(1 / n);
      expect(Math.abs(fraction - 1 / (n + 1))).toBeLessThan(0.02);
    }
  });

  test("an ejected server's clients move; nobody else's do", () => {
    const list = servers([1, 1, 1, 1]);
    const balancer = new RendezvousHash();
    const old = assignment(balancer, list);
    list[2]!.health.checked(false);
    const now = assignment(balancer, list);
    for (const client of clients) {
      if (old.get(client) !== list[2]!) expect(now.get(client)).toBe(old.get(client)!);
      else expect(now.get(client)).not.toBe(list[2]!);
    }
  });
});
