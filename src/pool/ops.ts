// Operations a pool worker runs: the built-in HASH and the user's handlers module for opcodes 0x80-0xFF.
import { FIRST_USER_OPCODE, LAST_USER_OPCODE, Opcode } from "../protocol/hps1.ts";

/** A pool operation. The payload view is valid until the returned value (or promise) is settled. */
export type OpHandler = (payload: Uint8Array) => Uint8Array | Promise<Uint8Array>;

const hashResult = new Uint8Array(32);

/** SHA-256 of the payload into a reused buffer (the worker copies it out before the next call). */
function sha256(payload: Uint8Array): Uint8Array {
  Bun.SHA256.hash(payload, hashResult);
  return hashResult;
}

/** Built-in operations, by opcode. */
export function builtinOps(): Map<number, OpHandler> {
  return new Map<number, OpHandler>([[Opcode.HASH, sha256]]);
}

/**
 * Loads a handlers module: it must export `handlers`, an object whose keys are opcodes 0x80-0xFF and whose
 * values are functions `(payload: Uint8Array) => Uint8Array | Promise<Uint8Array>`. Throws an Error that names
 * the module and what is wrong.
 */
export async function loadUserHandlers(modulePath: string): Promise<Map<number, OpHandler>> {
  const where = `custom.handlers (${modulePath})`;
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(modulePath)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${where}: cannot load the module: ${error instanceof Error ? error.message : String(error)}`);
  }
  const table = loaded.handlers;
  if (typeof table !== "object" || table === null) {
    throw new Error(
      `${where}: the module must export \`handlers\`, an object mapping opcodes 0x80-0xFF to functions (found ${table === undefined ? "no such export" : typeof table})`,
    );
  }
  const result = new Map<number, OpHandler>();
  for (const [key, value] of Object.entries(table)) {
    const opcode = Number(key);
    if (!Number.isInteger(opcode) || opcode < FIRST_USER_OPCODE || opcode > LAST_USER_OPCODE) {
      throw new Error(`${where}: handlers key ${JSON.stringify(key)} is not an opcode from 0x80 to 0xFF`);
    }
    if (typeof value !== "function") {
      throw new Error(
        `${where}: handlers[0x${opcode.toString(16)}] must be a function (payload: Uint8Array) => Uint8Array | Promise<Uint8Array> (got ${typeof value})`,
      );
    }
    result.set(opcode, value as OpHandler);
  }
  return result;
}
