// The settings of one upstream group, as the configuration schema validates them ([[upstreams]] in server.toml).

/** One server of a group: where it listens and its share of the traffic. */
export interface ServerSettings {
  /** "host:port" or "[v6]:port", as written in the configuration (also the server's name in stats). */
  readonly address: string;
  /** Relative share of requests (round_robin, random_two, ip_hash) or of in-flight requests (least_conn). */
  readonly weight: number;
  /** Connections (pooled idle + busy) to this server at once; 0 = no limit. */
  readonly max_connections: number;
}

export type Strategy = "round_robin" | "least_conn" | "ip_hash" | "random_two";

/** One [[upstreams]] entry. */
export interface UpstreamSettings {
  readonly name: string;
  readonly servers: readonly ServerSettings[];
  readonly strategy: Strategy;
  readonly keepalive_connections: number;
  readonly keepalive_timeout_s: number;
  readonly connect_timeout_s: number;
  readonly read_timeout_s: number;
  readonly retries: number;
  readonly max_fails: number;
  readonly fail_timeout_s: number;
  readonly health_check_path: string;
  readonly health_check_interval_s: number;
}
