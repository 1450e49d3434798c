// RFC 9110 request rules for files: preconditions (§13.2.2), byte ranges (§14), Accept-Encoding q-values (§12.5.3).

/** What the preconditions decided: go on, or answer with this status. */
export const PRECONDITION_PASS = 0;

/** Parses an HTTP date into whole seconds since the epoch, or NaN. */
export function parseHttpDateSeconds(text: string): number {
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? Number.NaN : Math.floor(ms / 1000);
}

/** Whether an entity-tag list (`"a", W/"b"` or `*`) matches `etag`; weak comparison ignores the W/ prefix. */
export function etagListMatches(list: string, etag: string, weak: boolean): boolean {
  const trimmed = list.trim();
  if (trimmed === "*") return true;
  if (trimmed === etag) return true; // the common single-tag case, no split
  for (const raw of trimmed.split(",")) {
    let tag = raw.trim();
    if (tag.startsWith("W/")) {
      if (!weak) continue; // strong comparison: a weak tag never matches
      tag = tag.slice(2);
    }
    if (tag === etag) return true;
  }
  return false;
}

/** Request headers the preconditions read (null when absent). */
export interface PreconditionHeaders {
  ifMatch: string | null;
  ifUnmodifiedSince: string | null;
  ifNoneMatch: string | null;
  ifModifiedSince: string | null;
}

/**
 * Evaluates the preconditions in RFC 9110 §13.2.2 order for a GET/HEAD on a file with a strong `etag`
 * and a last-modified time in whole seconds. Returns PRECONDITION_PASS, 412 or 304.
 */
export function evaluatePreconditions(headers: PreconditionHeaders, etag: string, lastModifiedSeconds: number): number {
  if (headers.ifMatch !== null) {
    if (!etagListMatches(headers.ifMatch, etag, false)) return 412;
  } else if (headers.ifUnmodifiedSince !== null) {
    const since = parseHttpDateSeconds(headers.ifUnmodifiedSince);
    if (!Number.isNaN(since) && lastModifiedSeconds > since) return 412;
  }
  if (headers.ifNoneMatch !== null) {
    if (etagListMatches(headers.ifNoneMatch, etag, true)) return 304;
  } else if (headers.ifModifiedSince !== null) {
    const since = parseHttpDateSeconds(headers.ifModifiedSince);
    if (!Number.isNaN(since) && lastModifiedSeconds <= since) return 304;
  }
  return PRECONDITION_PASS;
}

/** Whether an If-Range value (an entity tag or a date) still names this representation (strong comparison). */
export function ifRangeMatches(value: string, etag: string, lastModifiedSeconds: number): boolean {
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith("W/")) return trimmed === etag;
  const date = parseHttpDateSeconds(trimmed);
  return !Number.isNaN(date) && date === lastModifiedSeconds;
}

/** A byte range, inclusive at both ends. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Outcome of a Range header: ignore it (serve 200), serve these ranges (206), or 416. */
export const RANGE_IGNORE = 0;
export const RANGE_UNSATISFIABLE = 416;

/**
 * Parses `Range: bytes=...` against a representation of `size` bytes. Returns the satisfiable ranges (sorted as
 * given), RANGE_IGNORE when the header is malformed, names another unit, has more than `maxRanges` ranges or
 * overlapping ones (the whole file is sent instead), or RANGE_UNSATISFIABLE when no range overlaps the content.
 */
export function parseRange(header: string, size: number, maxRanges: number): ByteRange[] | number {
  const equals = header.indexOf("=");
  if (equals < 0 || header.slice(0, equals).trim().toLowerCase() !== "bytes") return RANGE_IGNORE;
  const specs = header.slice(equals + 1).split(",");
  if (specs.length > maxRanges) return RANGE_IGNORE;
  const ranges: ByteRange[] = [];
  for (const rawSpec of specs) {
    const spec = rawSpec.trim();
    if (spec === "") continue; // RFC 9110 allows empty list elements
    const dash = spec.indexOf("-");
    if (dash < 0) return RANGE_IGNORE;
    const first = spec.slice(0, dash).trim();
    const last = spec.slice(dash + 1).trim();
    if (!/^\d*$/.test(first) || !/^\d*$/.test(last) || (first === "" && last === "")) return RANGE_IGNORE;
    if (first === "") {
      const suffix = Number(last);
      if (suffix === 0 || size === 0) continue; // unsatisfiable suffix
      ranges.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    const start = Number(first);
    if (last !== "" && Number(last) < start) return RANGE_IGNORE; // invalid spec: the whole header is ignored
    if (start >= size) continue; // unsatisfiable
    ranges.push({ start, end: last === "" ? size - 1 : Math.min(Number(last), size - 1) });
  }
  if (ranges.length === 0) return specs.some((spec) => spec.trim() !== "") ? RANGE_UNSATISFIABLE : RANGE_IGNORE;
  if (ranges.length > 1) {
    const sorted = ranges.slice().sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) if (sorted[i]!.start <= sorted[i - 1]!.end) return RANGE_IGNORE;
  }
  return ranges;
}

/** Content codings hps can serve, as small integers (index into a file's variants). */
export const Encoding = { identity: 0, br: 1, zstd: 2, gzip: 3 } as const;
export const ENCODING_COUNT = 4;
/** Content-Encoding token and sidecar suffix per coding. */
export const ENCODING_TOKENS = ["identity", "br", "zstd", "gzip"] as const;
export const SIDECAR_SUFFIXES = ["", ".br", ".zst", ".gz"] as const;

/** Server preference when q-values tie: the smaller encodings first, identity last. */
const TIE_ORDER = [Encoding.br, Encoding.zstd, Encoding.gzip, Encoding.identity];
const IDENTITY_ONLY: readonly number[] = [Encoding.identity];
const preferenceMemo = new Map<string, readonly number[]>();
const MEMO_LIMIT = 512;

/**
 * The codings acceptable under an Accept-Encoding value, best first (by q-value, then br, zstd, gzip, identity).
 * identity is acceptable unless refused with q=0 (directly or through `*`). Results are memoised per header value.
 */
export function acceptableEncodings(acceptEncoding: string | null): readonly number[] {
  if (acceptEncoding === null || acceptEncoding === "") return IDENTITY_ONLY;
  const cached = preferenceMemo.get(acceptEncoding);
  if (cached !== undefined) return cached;
  const q = [Number.NaN, Number.NaN, Number.NaN, Number.NaN];
  let starQ = Number.NaN;
  for (const item of acceptEncoding.split(",")) {
    const [rawName, ...params] = item.split(";");
    const name = rawName!.trim().toLowerCase();
    let value = 1;
    for (const param of params) {
      const [key, rawValue] = param.split("=");
      if (key?.trim().toLowerCase() === "q") {
        const parsed = Number(rawValue?.trim());
        value = Number.isFinite(parsed) ? Math.min(1, Math.max(0, parsed)) : 0;
      }
    }
    if (name === "*") starQ = value;
    else if (name === "x-gzip" || name === "gzip") q[Encoding.gzip] = value;
    else if (name === "br") q[Encoding.br] = value;
    else if (name === "zstd") q[Encoding.zstd] = value;
    else if (name === "identity") q[Encoding.identity] = value;
  }
  for (let e = 0; e < q.length; e++) {
    if (Number.isNaN(q[e]!)) q[e] = Number.isNaN(starQ) ? (e === Encoding.identity ? 0.001 : 0) : starQ;
  }
  const order = TIE_ORDER.filter((e) => q[e]! > 0).sort(
    (a, b) => q[b]! - q[a]! || TIE_ORDER.indexOf(a) - TIE_ORDER.indexOf(b),
  );
  if (preferenceMemo.size >= MEMO_LIMIT) preferenceMemo.clear();
  preferenceMemo.set(acceptEncoding, order);
  return order;
}
