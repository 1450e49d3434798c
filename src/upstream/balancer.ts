// Load-balancing strategies: which server of a group gets the next request (or TCP connection).
//
// Every strategy picks among the servers available now (up, not removed, under max_connections) that the caller has
// not excluded (the servers a retried request already tried). Picks are synchronous, so no two requests see the same
// intermediate state.
import { fmix32, hashString, type UpstreamServer } from "./server.ts";
import type { Strategy } from "./types.ts";

export interface Balancer {
  /**
   * The server for the next request, or null when none is available. `clientKey` is the client's address (ip_hash
   * uses it; the others ignore it); `exclude` lists servers already tried for this request.
   */
  pick(
    servers: readonly UpstreamServer[],
    clientKey: string,
    exclude: readonly UpstreamServer[],
    nowMs: number,
  ): UpstreamServer | null;
}

export function makeBalancer(strategy: Strategy): Balancer {
  switch (strategy) {
    case "round_robin":
      return new SmoothRoundRobin();
    case "least_conn":
      return new LeastConnections();
    case "ip_hash":
      return new RendezvousHash();
    case "random_two":
      return new RandomTwoChoices(Math.random);
  }
}

function isCandidate(server: UpstreamServer, exclude: readonly UpstreamServer[], nowMs: number): boolean {
  return server.isAvailable(nowMs) && (exclude.length === 0 || !exclude.includes(server));
}

/**
 * nginx's smooth weighted round robin: each pick adds every candidate's weight to its running weight, takes the
 * candidate with the highest running weight and subtracts the total from it. Weights 1:2 give a, b, b / b, a, b
 * patterns: exact proportions over every window of sum-of-weights picks, and no server gets a burst.
 */
export class SmoothRoundRobin implements Balancer {
  pick(servers: readonly UpstreamServer[], _clientKey: string, exclude: readonly UpstreamServer[], nowMs: number) {
    let best: UpstreamServer | null = null;
    let total = 0;
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]!;
      if (!isCandidate(server, exclude, nowMs)) continue;
      server.currentWeight += server.weight;
      total += server.weight;
      if (best === null || server.currentWeight > best.currentWeight) best = server;
    }
    if (best !== null) best.currentWeight -= total;
    return best;
  }
}

/**
 * The server with the fewest requests in flight per unit of weight; ties go round the servers in turn (a rotating
 * start), so equally idle servers share the load.
 */
export class LeastConnections implements Balancer {
  private next = 0;

  pick(servers: readonly UpstreamServer[], _clientKey: string, exclude: readonly UpstreamServer[], nowMs: number) {
    const count = servers.length;
    if (count === 0) return null;
    const start = this.next++ % count;
    let best: UpstreamServer | null = null;
    for (let k = 0; k < count; k++) {
      const server = servers[(start + k) % count]!;
      if (!isCandidate(server, exclude, nowMs)) continue;
      // a/wa < b/wb without division: a*wb < b*wa
      if (best === null || server.inFlight * best.weight < best.inFlight * server.weight) best = server;
    }
    if (this.next >= 0x3fffffff) this.next = 0;
    return best;
  }
}

/**
 * Consistent hashing by client address, as rendezvous (highest random weight) hashing: every server scores
 * weight / -ln(u) with u a hash of (client, server) in (0, 1), and the best score wins. Adding a server moves only the
 * clients it now wins (its share of the weight, 1/(n+1) with equal weights); removing or ejecting one moves only its
 * own clients, each to its second-best server. O(servers) per pick, no ring to rebuild on reload.
 */
export class RendezvousHash implements Balancer {
  pick(servers: readonly UpstreamServer[], clientKey: string, exclude: readonly UpstreamServer[], nowMs: number) {
    const clientHash = hashString(clientKey);
    let best: UpstreamServer | null = null;
    let bestScore = -1;
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]!;
      if (!isCandidate(server, exclude, nowMs)) continue;
      const score = server.weight / -Math.log(unitHash(clientHash, server.hashSeed));
      if (score > bestScore) {
        best = server;
        bestScore = score;
      }
    }
    return best;
  }
}

/** A hash of (client, server) mapped into the open interval (0, 1). */
function unitHash(clientHash: number, serverSeed: number): number {
  const h = fmix32(Math.imul(clientHash ^ serverSeed, 0x9e3779b1) ^ fmix32(serverSeed + clientHash));
  return (h + 0.5) / 4294967296;
}

/**
 * The power of two choices: two different candidates drawn at random (in proportion to weight), and the one with
 * fewer requests in flight per unit of weight gets the request; on a tie, the one whose recent responses were faster.
 * Nearly as even as least_conn, without herding onto one server that just became least loaded.
 */
export class RandomTwoChoices implements Balancer {
  private readonly random: () => number;

  /** `random`: a source of uniform numbers in [0, 1) (tests pass a seeded one). */
  constructor(random: () => number) {
    this.random = random;
  }

  pick(servers: readonly UpstreamServer[], _clientKey: string, exclude: readonly UpstreamServer[], nowMs: number) {
    let totalWeight = 0;
    let candidates = 0;
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]!;
      if (!isCandidate(server, exclude, nowMs)) continue;
      totalWeight += server.weight;
      candidates++;
    }
    if (candidates === 0) return null;
    const first = this.draw(servers, exclude, nowMs, totalWeight, null);
    if (candidates === 1) return first;
    const second = this.draw(servers, exclude, nowMs, totalWeight - first.weight, first);
    const secondLoad = second.inFlight * first.weight;
    const firstLoad = first.inFlight * second.weight;
    if (secondLoad !== firstLoad) return secondLoad < firstLoad ? second : first;
    return second.responseMicrosAverage < first.responseMicrosAverage ? second : first;
  }

  /** One candidate other than `skip`, drawn in proportion to weight (`totalWeight` is theirs, without skip's). */
  private draw(
    servers: readonly UpstreamServer[],
    exclude: readonly UpstreamServer[],
    nowMs: number,
    totalWeight: number,
    skip: UpstreamServer | null,
  ): UpstreamServer {
    let target = this.random() * totalWeight;
    let last: UpstreamServer | null = null;
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]!;
      if (server === skip || !isCandidate(server, exclude, nowMs)) continue;
      last = server;
      target -= server.weight;
      if (target < 0) return server;
    }
    return last!; // rounding left target at 0: the last candidate
  }
}
