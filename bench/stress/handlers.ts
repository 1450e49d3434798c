// Stress-run handlers module (custom.handlers): an opcode that kills its pool worker and one that answers after a delay.
export const handlers = {
  /** Exits the worker thread at once: the pool must fail this task, replace the worker and keep serving. */
  128: (_payload: Uint8Array): Uint8Array => process.exit(3),
  /** Waits payload[0] * 256 + payload[1] milliseconds (without blocking the worker), then echoes the payload. */
  129: (payload: Uint8Array): Promise<Uint8Array> => {
    const delayMs = ((payload[0] ?? 0) << 8) | (payload[1] ?? 0);
    const copy = payload.slice();
    return new Promise((resolve) => setTimeout(() => resolve(copy), delayMs));
  },
};
