// The kinds of values settings take (sizes, durations, ranges, enumerations), as zod schemas with a default.
import { z } from "zod";
import { type DurationUnit, parseByteSize, parseDuration } from "./units.ts";

export const byteSize = (min: number, max: number, fallback: number) =>
  z
    .preprocess((v) => (typeof v === "string" ? parseByteSize(v) : v), z.number().int().min(min).max(max))
    .default(fallback);
/** A duration kept in `unit`; also written "500ms", "10s", "2m", "1h" (src/config/units.ts). */
export const duration = (unit: DurationUnit, number: z.ZodNumber, fallback: number) =>
  z.preprocess((v) => (typeof v === "string" ? parseDuration(v, unit) : v), number).default(fallback);
export const seconds = (min: number, max: number, fallback: number) =>
  duration("seconds", z.number().min(min).max(max), fallback);
export const wholeSeconds = (min: number, max: number, fallback: number) =>
  duration("seconds", z.number().int().min(min).max(max), fallback);
export const wholeMilliseconds = (min: number, max: number, fallback: number) =>
  duration("milliseconds", z.number().int().min(min).max(max), fallback);
export const wholeMicroseconds = (min: number, max: number, fallback: number) =>
  duration("microseconds", z.number().int().min(min).max(max), fallback);
export const int = (min: number, max: number, fallback: number) => z.number().int().min(min).max(max).default(fallback);
export const bool = (fallback: boolean) => z.boolean().default(fallback);
export const str = (fallback: string) => z.string().default(fallback);
export const strList = (fallback: string[]) => z.array(z.string()).default(fallback);
export const oneOf = <const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z.enum(values).default(fallback as never);
