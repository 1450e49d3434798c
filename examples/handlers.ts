// Example user handlers for the custom protocol: word count (0x80), gzip (0x81) and gunzip (0x82).
//
// Load with `custom.handlers = "./examples/handlers.ts"` (server.toml) or `--set custom.handlers=./examples/handlers.ts`.
// The module is imported once in every pool worker. It must export `handlers`: opcode (0x80-0xFF) -> function taking
// the request payload (a view valid until the function returns or its promise settles) and returning the response
// payload as a Uint8Array (or a promise of one). A thrown error becomes an error frame with status 6 and its message.

/** ASCII whitespace: space, \t, \n, \v, \f, \r. */
function isSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/** 0x80: number of whitespace-separated words in the payload, as a 4-byte big-endian unsigned integer. */
function wordCount(payload: Uint8Array): Uint8Array {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < payload.length; i++) {
    const space = isSpace(payload[i]!);
    if (!space && !inWord) words++;
    inWord = !space;
  }
  const result = new Uint8Array(4);
  new DataView(result.buffer).setUint32(0, words);
  return result;
}

/** 0x81: the payload compressed with gzip. */
function gzip(payload: Uint8Array): Uint8Array {
  // The payload may be a view of shared memory; Bun's zlib reads it like any other bytes (the types only name ArrayBuffer).
  return Bun.gzipSync(payload as Uint8Array<ArrayBuffer>);
}

/** 0x82: a gzip payload decompressed; a payload that is not gzip fails with status 6. */
function gunzip(payload: Uint8Array): Uint8Array {
  return Bun.gunzipSync(payload as Uint8Array<ArrayBuffer>);
}

export const handlers = {
  128: wordCount,
  129: gzip,
  130: gunzip,
};
