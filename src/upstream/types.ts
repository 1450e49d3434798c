// The settings of an upstream group as the schema validates them ([[upstreams]] in server.toml; src/config/lists.ts).
import type { Config } from "../config/schema.ts";

/** One [[upstreams]] entry. */
export type UpstreamSettings = Config["upstreams"][number];

/** One server of a group: where it listens, its weight, its connection limit. */
export type ServerSettings = UpstreamSettings["servers"][number];

export type Strategy = UpstreamSettings["strategy"];
