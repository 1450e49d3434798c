// The units a setting may be written in: byte sizes ("16 MiB", "64k") and durations ("500ms", "10s", "2m", "1h30m").

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Parses "16 MiB", "64k", "1024" into a byte count; returns NaN when it cannot. */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return Number.NaN;
  const factor = match[2] === "" ? 1 : BYTE_UNITS[match[2]!.toLowerCase()];
  return factor === undefined ? Number.NaN : Math.round(Number(match[1]) * factor);
}

/** The units duration settings are kept in (a setting's `unit`). */
export type DurationUnit = "seconds" | "milliseconds" | "microseconds";

/** Microseconds per unit: sums stay exact for every value a setting can hold. */
const MICROS_PER_SUFFIX: Record<string, number> = {
  us: 1,
  µs: 1,
  ms: 1e3,
  s: 1e6,
  m: 60e6,
  h: 3600e6,
  d: 86_400e6,
};
const MICROS_PER_UNIT: Record<DurationUnit, number> = { seconds: 1e6, milliseconds: 1e3, microseconds: 1 };
/** The suffixes a duration accepts, for error messages. */
export const DURATION_SUFFIXES = "us, ms, s, m, h, d";

/**
 * Parses a duration into a number of `unit`: "500ms", "10s", "2m", "1h30m", "1.5s" (the suffixes us, ms, s, m, h,
 * d, as nginx and Caddy take them), or a plain number meaning `unit`. Returns NaN when it cannot.
 */
export function parseDuration(text: string, unit: DurationUnit): number {
  // A sign is read so that "-1s" is reported as out of range (as -1 is), not as an unknown form.
  const negative = text.trim().startsWith("-");
  const trimmed = negative ? text.trim().slice(1) : text.trim();
  const sign = negative ? -1 : 1;
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return sign * Number(trimmed);
  const part = /(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h|d)\s*/y;
  let micros = 0;
  let matched = 0;
  while (part.lastIndex < trimmed.length) {
    const match = part.exec(trimmed);
    if (match === null) return Number.NaN;
    micros += Number(match[1]) * MICROS_PER_SUFFIX[match[2]!]!;
    matched++;
  }
  if (matched === 0) return Number.NaN;
  // Rounded to a nanosecond's worth of the unit: "0.3s" in milliseconds is 300, not 300.00000000000006.
  return (sign * Math.round((micros / MICROS_PER_UNIT[unit]) * 1e9)) / 1e9;
}
