// The HPS/1 vocabulary shared by the codec (src/tcp/frame.ts) and the worker pool: status codes and built-in opcodes.
// The wire format is specified in docs/hps1-protocol.md; this file is its single definition in code, so the pool
// answers with the same statuses as the protocol without importing src/tcp.

/** Response status codes: 0 ok, otherwise the error (the payload is then a UTF-8 message). */
export const FrameStatus = {
  OK: 0,
  UNKNOWN_OPCODE: 1,
  TOO_LARGE: 2,
  BAD_FRAME: 3,
  BUSY: 4,
  RATE_LIMITED: 5,
  INTERNAL: 6,
  TIMEOUT: 7,
} as const;

/** Built-in opcodes; 0x80-0xFF belong to the user's handlers module (custom.handlers). */
export const Opcode = { PING: 0x00, ECHO: 0x01, HASH: 0x02, STATS: 0x03 } as const;

export const FIRST_USER_OPCODE = 0x80;
export const LAST_USER_OPCODE = 0xff;
