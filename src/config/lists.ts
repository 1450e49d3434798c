// Arrays of tables in server.toml ([[upstreams]], [[http.routes]]): the fields of each element, their defaults, units
// and meaning, how a reload treats the list, and an example shown (commented out) in server.toml and the reference.
import { z } from "zod";
import { bool, int, oneOf, seconds, str } from "./kinds.ts";
import type { ReloadRule } from "./reload-rule.ts";

/** One field of a list element: as a setting, but a field without a default must be given in every element. */
export interface FieldSpec {
  readonly schema: z.ZodType;
  readonly doc: string;
  readonly unit?: string;
  /** No default: every element must set it. */
  readonly isRequired?: boolean;
}

/** An array of tables. */
export interface ListSpec {
  /** The table that holds the list ("http" for [[http.routes]]); null for a list at the top ([[upstreams]]). */
  readonly table: string | null;
  /** Its key in that table (or at the top). */
  readonly key: string;
  /** What one element is, for people. */
  readonly doc: string;
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** What a reload does when the list changed (any element, added, removed or reordered). */
  readonly reload: ReloadRule;
  /** Elements shown commented out in server.toml and in the reference. */
  readonly example: readonly Readonly<Record<string, unknown>>[];
}

/** A server of an upstream group: "host:port", or a table with the address and its share. */
const serverEntry = z.preprocess(
  (value) => (typeof value === "string" ? { address: value } : value),
  z
    .object({
      address: z.string(),
      weight: int(1, 1000, 1),
      max_connections: int(0, 10_000_000, 0),
    })
    .strict(),
);

export const STRATEGIES = ["round_robin", "least_conn", "ip_hash", "random_two"] as const;

/** The lists, in the order server.toml and the reference show them (after the tables). */
export const LISTS = {
  upstreams: {
    table: null,
    key: "upstreams",
    doc: "An upstream group: servers that proxied HTTP routes (http.routes) or the TCP proxy (proxy.upstream) send to, with how to pick one, keep connections and notice failures.",
    reload: { rebuild: ["upstreams"] },
    fields: {
      name: {
        schema: z.string(),
        isRequired: true,
        doc: "The group's name, used by http.routes[].upstream, proxy.upstream and in stats (letters, digits, _ . -).",
      },
      servers: {
        schema: z.array(serverEntry),
        isRequired: true,
        doc: 'Its servers: "host:port" ("[::1]:9001" for IPv6), or { address = "host:port", weight = 2, max_connections = 256 } (weight 1-1000, default 1: its share of requests; max_connections: connections to it at once, pooled ones included, 0 = no limit).',
      },
      strategy: {
        schema: oneOf(STRATEGIES, "round_robin"),
        doc: "How a server is picked: round_robin (weighted, smooth: weights 1:2 give exactly 1:2 in every 3 requests), least_conn (fewest in flight per weight), ip_hash (consistent hashing of the client address: adding a server moves about 1/(n+1) of clients) or random_two (of two servers drawn by weight, the one with fewer in flight).",
      },
      keepalive_connections: {
        schema: int(0, 1_000_000, 64),
        doc: "Idle connections kept open per server for reuse (per I/O thread); 0 = a new connection per request.",
      },
      keepalive_timeout_s: {
        schema: seconds(0.1, 86_400, 60),
        unit: "seconds",
        doc: "An idle pooled connection is closed after this; keep it below the server's own keep-alive timeout.",
      },
      connect_timeout_s: {
        schema: seconds(0.01, 3600, 2),
        unit: "seconds",
        doc: "Time to open a connection to a server before trying the next one (retries) or answering 502.",
      },
      read_timeout_s: {
        schema: seconds(0, 86_400, 30),
        unit: "seconds",
        doc: "Time a server may send nothing while a response is owed (also between response bytes; for the TCP proxy, with no byte either way) before the request gets 504 (the TCP connection is closed); 0 = no limit.",
      },
      retries: {
        schema: int(0, 100, 1),
        doc: "Other servers tried after a failed attempt: for any request when the connection could not be opened, and for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE; bodies up to 64 KiB) when it broke before the response began.",
      },
      max_fails: {
        schema: int(0, 1000, 3),
        doc: "Passive health: this many failed attempts within fail_timeout_s of each other eject the server for fail_timeout_s (after that, one failure ejects it again until a response succeeds); 0 = never eject.",
      },
      fail_timeout_s: {
        schema: seconds(0.1, 86_400, 10),
        unit: "seconds",
        doc: "The window max_fails counts in, and how long an ejected server gets no requests.",
      },
      health_check_path: {
        schema: str(""),
        doc: 'Active health: GET this path on every server each health_check_interval_s (2xx/3xx = healthy; a failing server gets nothing until a check passes, a passing check ends an ejection at once); "" = no active checks.',
      },
      health_check_interval_s: {
        schema: seconds(0.1, 86_400, 5),
        unit: "seconds",
        doc: "Time between active health checks of each server.",
      },
    },
    example: [
      {
        name: "app",
        servers: ["127.0.0.1:9001", { address: "127.0.0.1:9002", weight: 2, max_connections: 256 }],
        strategy: "round_robin",
        health_check_path: "/healthz",
      },
    ],
  },
  "http.routes": {
    table: "http",
    key: "routes",
    doc: "A path-prefix route: requests whose path starts with path_prefix (the longest prefix wins) go to an upstream group or are served from a directory; paths no route matches are served from http.root.",
    reload: { rebuild: ["http-handler"] },
    fields: {
      path_prefix: {
        schema: z.string(),
        isRequired: true,
        doc: 'The path prefix, starting with "/" (end it with "/" to match whole segments: "/api" also matches "/apiary"). Matched against the decoded path.',
      },
      upstream: {
        schema: str(""),
        doc: "The [[upstreams]] group the matching requests are proxied to (set this or root).",
      },
      root: {
        schema: str(""),
        doc: "A directory the matching requests are served from, like http.root (set this or upstream).",
      },
      strip_prefix: {
        schema: bool(false),
        doc: "Remove path_prefix from the path before proxying or looking up the file (/api/users → /users).",
      },
    },
    example: [
      { path_prefix: "/api/", upstream: "app", strip_prefix: false },
      { path_prefix: "/assets/", root: "./public/assets", strip_prefix: true },
    ],
  },
} as const satisfies Record<string, ListSpec>;

export type ListName = keyof typeof LISTS;
export const LIST_NAMES = Object.keys(LISTS) as ListName[];

type FieldShape<T extends Record<string, FieldSpec>> = { [K in keyof T]: T[K]["schema"] };

/** The zod schema of one list: an array (empty when absent) of strict tables of its fields. */
export function listSchema<L extends ListSpec>(list: L) {
  const shape = Object.fromEntries(
    Object.entries(list.fields).map(([key, field]) => [key, field.schema]),
  ) as FieldShape<L["fields"]>;
  return z.array(z.object(shape).strict()).default([]);
}

/** Where a list lives in a configuration object: `config[table][key]` or `config[key]`. */
export function listValue(config: unknown, list: ListSpec): unknown {
  const values = config as Record<string, unknown>;
  if (list.table === null) return values[list.key];
  return (values[list.table] as Record<string, unknown> | undefined)?.[list.key];
}

/** "upstreams", "http.routes": the list's name in messages and the reference. */
export function listPath(list: ListSpec): string {
  return list.table === null ? list.key : `${list.table}.${list.key}`;
}
