// The settings reference (docs/configuration.md): one Markdown table per TOML table, with how each setting reloads.
import { tomlValue } from "./print.ts";
import {
  effectOf,
  hasPart,
  PROTOCOLS,
  type Protocol,
  RELOAD_PARTS,
  type ReloadEffect,
  type ReloadPart,
  type ReloadRule,
} from "./reload-rule.ts";
import { LIST_NAMES, LISTS, type ListSpec, listPath } from "./lists.ts";
import { DEFAULT_CONFIG, SETTINGS } from "./schema.ts";
import type { SettingSpec } from "./settings/spec.ts";

const DEFAULTS = DEFAULT_CONFIG as unknown as Record<string, Record<string, unknown>>;

/** The words of the reload column for each effect that is not a rebuild. */
const EFFECT_WORDS = {
  live: "at once",
  "new-connections": "new connections",
  restart: "restart",
  "not-read": "not read",
} as const satisfies Record<Exclude<ReloadEffect, object>, string>;

/** The words for `effect` in a server speaking `protocol`; a rebuild of parts it does not have is "not read". */
function effectWords(effect: ReloadEffect, protocol: Protocol): string {
  if (typeof effect === "string") return EFFECT_WORDS[effect];
  const parts = effect.rebuild.filter((part) => hasPart(part, { protocol, ioThreads: 1 }));
  if (parts.length === 0) return EFFECT_WORDS["not-read"];
  return `at once, ${parts.map((part) => RELOAD_PARTS[part].label).join(", ")}`;
}

/**
 * The reload column for one rule, in words: "at once", "restart", "http: restart", "echo, custom: new connections",
 * "at once, resets rate-limit state; with server.io_threads > 1: restart". Protocols that do not read the setting
 * are left out.
 */
export function reloadWords(rule: ReloadRule): string {
  const byProtocol = new Map<string, Protocol[]>();
  for (const protocol of PROTOCOLS) {
    const words = effectWords(effectOf(rule, { protocol, ioThreads: 1 }), protocol);
    byProtocol.set(words, [...(byProtocol.get(words) ?? []), protocol]);
  }
  let text: string;
  if (byProtocol.size === 1) {
    text = [...byProtocol.keys()][0]!;
  } else {
    text = [...byProtocol]
      .filter(([words]) => words !== EFFECT_WORDS["not-read"])
      .map(([words, protocols]) => `${protocols.join(", ")}: ${words}`)
      .join("; ");
  }
  if (typeof rule === "object" && !("rebuild" in rule) && rule.threaded !== undefined) {
    text += `; with server.io_threads > 1: ${effectWords(rule.threaded, "http")}`;
  }
  return text;
}

/** What the words of the reload column mean. */
export function reloadLegend(): string {
  const parts = (Object.keys(RELOAD_PARTS) as ReloadPart[]).map(
    (part) => `- **${RELOAD_PARTS[part].label}**: ${RELOAD_PARTS[part].words}.`,
  );
  return [
    "The *reload* column says what a configuration reload (`SIGHUP`, or `Server.reload` in code) does with a changed setting:",
    "",
    `- **${EFFECT_WORDS.live}**: the requests, connections and timers that follow use the new value.`,
    `- **${EFFECT_WORDS["new-connections"]}**: connections opened after the reload use it; open ones keep the value they started with.`,
    `- **${EFFECT_WORDS.restart}**: read once at start; the reload names it in a warning and it keeps its running value until the next start.`,
    `- **${EFFECT_WORDS["not-read"]}**: nothing reads it in this kind of server; the reload takes the new value.`,
    "- **http: …; echo, custom: …**: it differs by `server.protocol`; a protocol not named does not read the setting.",
    "",
    "Some changes also build a part of the running server anew (and only then; parts whose settings did not change are kept):",
    "",
    ...parts,
    "",
  ].join("\n");
}

/** The settings reference: the legend of the reload column, then one Markdown table per TOML table. */
export function settingsReference(): string {
  const out: string[] = [reloadLegend()];
  for (const [table, settings] of Object.entries(SETTINGS)) {
    out.push(
      `### \`[${table}]\``,
      "",
      "| setting | default | unit | reload | meaning |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const [key, spec] of Object.entries(settings as Record<string, SettingSpec>)) {
      const note = spec.notAppliedBecause
        ? ` *Only \`${tomlValue(spec.runtimeValue)}\` can be honoured (${spec.notAppliedBecause}); any other value is accepted and reported at start-up as not applied.*`
        : "";
      const shown = tomlValue(DEFAULTS[table]![key]).replaceAll("|", "\\|");
      out.push(
        `| \`${table}.${key}\` | \`${shown}\` | ${spec.unit ?? ""} | ${reloadWords(spec.reload)} | ${spec.doc.replaceAll("|", "\\|")}${note} |`,
      );
    }
    out.push("");
  }
  for (const name of LIST_NAMES) out.push(...listReference(LISTS[name]));
  return out.join("\n");
}

/** One array of tables: what an element is, how a change reloads, its fields, and an example. */
function listReference(list: ListSpec): string[] {
  const name = listPath(list);
  const out = [
    `### \`[[${name}]]\``,
    "",
    `${list.doc} Any number of them (none by default). Reload: ${reloadWords(list.reload)}.`,
    "",
    "| field | default | unit | meaning |",
    "| --- | --- | --- | --- |",
  ];
  for (const [key, field] of Object.entries(list.fields)) {
    const shown = field.isRequired
      ? "required"
      : `\`${tomlValue(field.schema.parse(undefined)).replaceAll("|", "\\|")}\``;
    out.push(`| \`${name}[].${key}\` | ${shown} | ${field.unit ?? ""} | ${field.doc.replaceAll("|", "\\|")} |`);
  }
  out.push("", "```toml");
  for (const example of list.example) {
    out.push(`[[${name}]]`);
    for (const [key, value] of Object.entries(example)) out.push(`${key} = ${tomlValue(value)}`);
  }
  out.push("```", "");
  return out;
}
