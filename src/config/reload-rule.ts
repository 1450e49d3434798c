// How a setting reloads: the vocabulary every schema entry uses (SETTINGS[table][key].reload) and the parts a reload
// can rebuild. planReload, the listeners' rebuild decisions and the settings reference are derived from it.

/** The protocols a server can speak (server.protocol). */
export const PROTOCOLS = ["http", "echo", "custom"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * What a reload does with a changed setting, for one kind of running server:
 * - "live": applied at once; requests, connections and timers read the new value from the reload on.
 * - "new-connections": applied to connections opened after the reload; open ones keep the value they started with.
 * - "restart": read once at start; a reload names it in a warning and keeps the running value.
 * - "not-read": nothing in this kind of server reads it; the new value is simply taken.
 * - { rebuild }: applied at once by building the named parts anew (the parts a reload leaves alone are kept as
 *   they are). A part that does not exist in the running server (an HTTP part with `echo`) is skipped.
 */
export type ReloadEffect =
  | "live"
  | "new-connections"
  | "restart"
  | "not-read"
  | { readonly rebuild: readonly ReloadPart[] };

/**
 * A rule that depends on the running server. `threaded` (server.io_threads > 1) is looked at first, then the
 * running protocol, then `otherwise`.
 */
export type ReloadCases = { readonly [P in Protocol]?: ReloadEffect } & {
  readonly threaded?: ReloadEffect;
  readonly otherwise: ReloadEffect;
};

/** Every setting's schema entry has one: a single effect, or cases by the running server. */
export type ReloadRule = ReloadEffect | ReloadCases;

/** The parts of a running server that a reload builds anew when one of their settings changed (RELOAD_PARTS). */
export type ReloadPart =
  | "http-handler"
  | "http-site"
  | "http-access-log"
  | "http-connections"
  | "rate-limiter"
  | "log-file"
  | "report-timer";

/** A part of a running server that a reload builds anew when one of its settings changed. */
export interface ReloadPartSpec {
  /** The part containing this one: rebuilding this part rebuilds its container too. */
  readonly within?: ReloadPart;
  /** The protocols whose servers have this part; all when absent. */
  readonly protocols?: readonly Protocol[];
  /** What rebuilding it means to a user, completing "a change …". */
  readonly words: string;
}

/**
 * The parts, by name. A new subsystem that rebuilds on reload (TLS certificates, upstream groups) adds its part here
 * and names it in its settings' rules; its listener asks changedParts() whether to rebuild.
 */
export const RELOAD_PARTS: Readonly<Record<ReloadPart, ReloadPartSpec>> = {
  "http-handler": {
    protocols: ["http"],
    words: "switches HTTP to a new request handler (requests in flight finish with the old settings)",
  },
  "http-site": {
    within: "http-handler",
    protocols: ["http"],
    words: "rebuilds the HTTP site: its in-memory file cache starts empty",
  },
  "http-access-log": {
    within: "http-handler",
    protocols: ["http"],
    words: "opens the new access log before the switch (one that cannot be opened rejects the reload)",
  },
  "http-connections": {
    within: "http-handler",
    protocols: ["http"],
    words: "counts open HTTP keep-alive connections anew from their next request",
  },
  "rate-limiter": { words: "resets every address's rate-limit state (buckets start full)" },
  "log-file": {
    words: "opens the new log file (appending) before the switch; one that cannot be opened rejects the reload",
  },
  "report-timer": { words: "reschedules the periodic status report" },
};

/** The shape of a running server that rules depend on. */
export interface RunningShape {
  readonly protocol: Protocol;
  readonly ioThreads: number;
}

/** The effect of `rule` in a server of `shape`. */
export function effectOf(rule: ReloadRule, shape: RunningShape): ReloadEffect {
  if (typeof rule === "string" || "rebuild" in rule) return rule;
  if (shape.ioThreads > 1 && rule.threaded !== undefined) return rule.threaded;
  return rule[shape.protocol] ?? rule.otherwise;
}

/** Whether a server of `shape` has `part`. */
export function hasPart(part: ReloadPart, shape: RunningShape): boolean {
  const protocols = RELOAD_PARTS[part].protocols;
  return protocols === undefined || protocols.includes(shape.protocol);
}

/** `part` and every part containing it. */
export function withContainers(part: ReloadPart): ReloadPart[] {
  const parts: ReloadPart[] = [];
  for (let current: ReloadPart | undefined = part; current !== undefined; ) {
    parts.push(current);
    current = RELOAD_PARTS[current].within;
  }
  return parts;
}
