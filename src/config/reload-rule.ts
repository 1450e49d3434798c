// How a setting reloads: the vocabulary every schema entry uses (SETTINGS[table][key].reload) and the parts a reload
// can rebuild. planReload, the listeners' rebuild decisions and the settings reference are derived from it.

/** The protocols a server can speak (server.protocol). */
export const PROTOCOLS = ["http", "echo", "custom", "tcp_proxy"] as const;
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
  | "report-timer"
  | "tls-certificates"
  | "upstreams";

/** A part of a running server that a reload builds anew when one of its settings changed. */
export interface ReloadPartSpec {
  /** The part containing this one: rebuilding this part rebuilds its container too. */
  readonly within?: ReloadPart;
  /** The protocols whose servers have this part; all when absent. */
  readonly protocols?: readonly Protocol[];
  /** A few words for the settings reference's reload column ("rebuilds the HTTP site"). */
  readonly label: string;
  /** What rebuilding it means to a user, in a sentence (the reference's legend). */
  readonly words: string;
}

/**
 * The parts, by name. A new subsystem that rebuilds on reload (TLS certificates, upstream groups) adds its part here
 * and names it in its settings' rules; its listener asks changedParts() whether to rebuild.
 */
export const RELOAD_PARTS: Readonly<Record<ReloadPart, ReloadPartSpec>> = {
  "http-handler": {
    protocols: ["http"],
    label: "new HTTP handler",
    words:
      "HTTP requests that arrive after the reload are answered by a handler built for the new settings; requests in flight finish with the old ones, keep-alive connections stay open",
  },
  "http-site": {
    within: "http-handler",
    protocols: ["http"],
    label: "rebuilds the HTTP site",
    words:
      "the HTTP site is built anew: a new http.root must be a readable directory or the reload is rejected, and the in-memory file cache starts empty (its hit and miss counters carry on)",
  },
  "http-access-log": {
    within: "http-handler",
    protocols: ["http"],
    label: "reopens the access log",
    words:
      "the new access log is opened before the switch (one that cannot be opened rejects the reload); requests in flight are logged to the log they started with",
  },
  "http-connections": {
    within: "http-handler",
    protocols: ["http"],
    label: "recounts HTTP connections",
    words:
      "open keep-alive connections are counted anew, and admitted anew (allow/deny, connection limits), at their next request; otherwise they stay counted under http.connection_limits across reloads",
  },
  "rate-limiter": {
    label: "resets rate-limit state",
    words: "every client address's rate-limit state is dropped: every bucket starts full",
  },
  "log-file": {
    label: "opens the new log file",
    words:
      "the new log file is opened (appending) before anything changes; one that cannot be opened rejects the reload",
  },
  "report-timer": { label: "reschedules the report", words: "the periodic status report is rescheduled" },
  "tls-certificates": {
    label: "serves new certificates",
    words:
      "the certificate files are read again (on every reload, changed or not) and checked; new connections handshake with them and the new TLS settings while open ones keep theirs; a pair that cannot be used rejects the reload",
  },
  upstreams: {
    protocols: ["http", "tcp_proxy"],
    label: "reconfigures the upstream groups",
    words:
      "upstream groups are changed in place: a server added gets requests at once; a server removed gets no new ones, finishes those in flight and then its connections close; servers that stay keep their pooled connections and failure counts; a new group starts, a removed one stops once its requests are done",
  },
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
