// The few C library calls Bun has no API for (resource limits, a datagram to a unix socket), through bun:ffi.
import { dlopen, FFIType, ptr, read } from "bun:ffi";

/** Linux's numbers (the same on x86-64 and arm64). */
export const RLIMIT_NOFILE = 7;
export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
/** A datagram to a socket nobody reads must not raise SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;

const SYMBOLS = {
  getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  sendto: {
    args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
    returns: FFIType.i64,
  },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

type Libc = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

/** glibc first; musl (Alpine) names its one library after the loader. */
const CANDIDATES = ["libc.so.6", "libc.so", "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1"];

let loaded: Libc | null | undefined;

/** The C library's functions, or null where it cannot be loaded (not Linux). */
export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.platform !== "linux") return loaded;
  for (const name of CANDIDATES) {
    try {
      loaded = dlopen(name, SYMBOLS).symbols;
      break;
    } catch {
      // Try the next name.
    }
  }
  return loaded;
}

/** errno of the last failed call on this thread. */
export function errno(c: Libc): number {
  const location = c.__errno_location();
  return location === null ? 0 : read.i32(location);
}

export interface ResourceLimit {
  /** The limit in force (soft). */
  readonly soft: number;
  /** The most the soft limit may be raised to without privilege (hard). */
  readonly hard: number;
}

/** getrlimit(resource), or null when it cannot be read. "Unlimited" reads as Number.MAX_SAFE_INTEGER. */
export function getResourceLimit(c: Libc, resource: number): ResourceLimit | null {
  const limit = new BigUint64Array(2);
  if (c.getrlimit(resource, ptr(limit)) !== 0) return null;
  return { soft: toNumber(limit[0]!), hard: toNumber(limit[1]!) };
}

/** setrlimit(resource); returns 0 or the errno (EPERM: raising the hard limit needs CAP_SYS_RESOURCE). */
export function setResourceLimit(c: Libc, resource: number, limit: ResourceLimit): number {
  const values = new BigUint64Array([BigInt(limit.soft), BigInt(limit.hard)]);
  return c.setrlimit(resource, ptr(values)) === 0 ? 0 : errno(c);
}

function toNumber(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}
