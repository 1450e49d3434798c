// What one setting entry holds, and what several tables of settings share.
import type { z } from "zod";
import type { ReloadRule } from "../reload-rule.ts";

/** One setting: its zod schema (with default), a sentence for people, its unit when it has one, how it reloads. */
export interface SettingSpec {
  readonly schema: z.ZodType;
  readonly doc: string;
  readonly unit?: string;
  /** What a configuration reload does when this setting changed (src/config/reload-rule.ts). */
  readonly reload: ReloadRule;
  /** Present when Bun's APIs give no way to apply the setting; the reason is shown at start-up. */
  readonly notAppliedBecause?: string;
  /** With notAppliedBecause: the value the runtime behaves as if set to; any other value is reported as not applied. */
  readonly runtimeValue?: unknown;
  /**
   * A list of tables ([[table.key]] blocks, the last setting of its table): set in the file only (the environment and
   * --set refuse it), shown in server.toml as `example` when empty.
   */
  readonly tableList?: { readonly example: readonly string[] };
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

// A reload rule shared by several tables (the vocabulary is in src/config/reload-rule.ts).
/** Read by the TCP listeners (echo, custom, tcp_proxy) when they open a connection. */
export const TCP_NEW_CONNECTIONS: ReloadRule = {
  echo: "new-connections",
  custom: "new-connections",
  tcp_proxy: "new-connections",
  otherwise: "not-read",
};
