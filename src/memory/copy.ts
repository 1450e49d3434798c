// Copying a byte range between buffers on hot paths: byte by byte when short, TypedArray.set over a view when long.
//
// TypedArray.set needs a view of the source range (subarray), and making that view costs more than copying a short
// range one byte at a time; bench/micro/copy.bench.ts measures where the two cross.

/** Ranges up to this many bytes are copied byte by byte (no view made); longer ones through a view and set. */
export const BYTEWISE_COPY_MAX_BYTES = 64;

/** Copies source[sourceStart, sourceStart + length) to target at targetOffset. */
export function copyRange(
  source: Uint8Array,
  sourceStart: number,
  length: number,
  target: Uint8Array,
  targetOffset: number,
): void {
  if (length <= BYTEWISE_COPY_MAX_BYTES) {
    for (let i = 0; i < length; i++) target[targetOffset + i] = source[sourceStart + i]!;
    return;
  }
  target.set(
    sourceStart === 0 && length === source.length ? source : source.subarray(sourceStart, sourceStart + length),
    targetOffset,
  );
}
