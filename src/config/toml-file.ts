// The TOML layer: the configuration file read and parsed, syntax errors said with line and column.
import { stat } from "node:fs/promises";
import { parse as parseToml, TomlError } from "smol-toml";
import type { Origins, RawConfig } from "./setting-lookup.ts";

/**
 * The text of the configuration file; null when there is none (or it cannot be read: the problem is then noted).
 * Not only regular files: `--config /dev/null` is an empty configuration.
 */
export async function readText(path: string, problems: string[]): Promise<string | null> {
  try {
    if ((await stat(path)).isDirectory()) {
      problems.push(`${path}: is a directory, not a TOML file (give the path of the file itself)`);
      return null;
    }
    return await Bun.file(path).text();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    const reason = code === "EACCES" || code === "EPERM" ? "permission denied" : (error as Error).message;
    problems.push(`${path}: cannot be read (${reason})`);
    return null;
  }
}

export function parseFile(path: string, text: string, problems: string[]): RawConfig {
  try {
    return parseToml(text) as RawConfig;
  } catch (error) {
    if (error instanceof TomlError) {
      problems.push(tomlProblem(path, text, error));
    } else {
      problems.push(`${path}: cannot be read: ${(error as Error).message}`);
    }
    return {};
  }
}

/**
 * A TOML syntax error as `path:line:column: TOML syntax error: reason`. smol-toml reports a string left open at the
 * end of its line as a control character (the newline) in a string: that is said as what it is, an unterminated
 * string, at the column where the string starts.
 */
function tomlProblem(path: string, text: string, error: TomlError): string {
  const reason = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
  const lineText = text.split("\n")[error.line - 1] ?? "";
  const atLineEnd = error.column > lineText.replace(/\r$/, "").length;
  if (reason === "unfinished string" || (reason.startsWith("control characters") && atLineEnd)) {
    const opened = openString(lineText);
    if (opened === null) return `${path}:${error.line}:${error.column}: TOML syntax error: unterminated string`;
    // A multi-line string (three quotes) may run on; the others must end on the line they start.
    const where = opened.quote.length === 3 ? "" : " on the same line";
    return `${path}:${error.line}:${opened.column}: TOML syntax error: unterminated string (close it with ${opened.quote}${where})`;
  }
  if (reason.startsWith("trying to redefine")) {
    // The line smol-toml points at is the second definition: a [table] header or a `key = value`.
    const definition = lineText.trim();
    const what = definition.startsWith("[")
      ? definition.replace(/\].*$/, "]").replace(/\s+/g, "")
      : definition.split("=")[0]!.trim();
    if (what !== "")
      return `${path}:${error.line}:${error.column}: TOML syntax error: ${what} is given twice (${reason})`;
  }
  return `${path}:${error.line}:${error.column}: TOML syntax error: ${reason}`;
}

/** The string still open at the end of `line`: its 1-based column and opening quote; null when none is. */
function openString(line: string): { column: number; quote: string } | null {
  let quote = "";
  let start = -1;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (quote === "") {
      if (char === "#") return null;
      if (char === '"' || char === "'") {
        quote = line.startsWith(char.repeat(3), i) ? char.repeat(3) : char;
        start = i;
        i += quote.length - 1;
      }
    } else if (quote === '"' && char === "\\") {
      i++; // an escape: the next character cannot close the string
    } else if (line.startsWith(quote, i)) {
      i += quote.length - 1;
      quote = "";
    }
  }
  return quote === "" ? null : { column: start + 1, quote };
}

export function noteOrigins(raw: RawConfig, source: string, origins: Origins): void {
  for (const [table, values] of Object.entries(raw)) {
    if (typeof values !== "object" || values === null || Array.isArray(values)) continue;
    for (const key of Object.keys(values)) origins.set(`${table}.${key}`, source);
  }
}
