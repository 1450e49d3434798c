// Linux SO_REUSEPORT steering, so a listener can be replaced without resetting connections that are arriving.
//
// Two listeners on one port with SO_REUSEPORT share new connections by hash. Closing the old one resets every
// connection still in its accept queue (and its half-open handshakes), which under load is a few per swap. A
// classic BPF program attached to the port's reuseport group chooses the socket for each new connection instead:
// "always index 1" sends them all to the listener that joined second (the new one) while the old one drains its
// queue; then the old one is closed with nothing queued and the program is detached. The socket calls Bun does not
// expose (setsockopt with a BPF program, getsockopt TCP_INFO) are made through bun:ffi from the C library.
import { closeSync, openSync, readdirSync } from "node:fs";

const SOL_SOCKET = 1;
const IPPROTO_TCP = 6;
const SO_ACCEPTCONN = 30;
const SO_ATTACH_REUSEPORT_CBPF = 51;
const SO_DETACH_REUSEPORT_BPF = 68;
const TCP_INFO = 11;
/** struct tcp_info: for a listening socket, tcpi_unacked (offset 24) is the length of its accept queue. */
const TCP_INFO_BYTES = 104;
const TCPI_UNACKED_OFFSET = 24;
/** BPF_RET | BPF_K: return the constant k, the index of the chosen socket in the group. */
const BPF_RET_K = 0x06;

interface Libc {
  setsockopt(fd: number, level: number, name: number, value: number, length: number): number;
  getsockopt(fd: number, level: number, name: number, value: number, length: number): number;
  getsockname(fd: number, address: number, length: number): number;
}

interface LoadedLibc {
  readonly calls: Libc;
  readonly ptr: (view: ArrayBufferView) => number;
}

/** The socket calls, or null where they cannot be made (not Linux, no FFI); undefined until first use. */
let libc: LoadedLibc | null | undefined;

/** Loads the socket calls once (bun:ffi); null where they cannot be made. The functions below need it loaded. */
export async function loadSteering(): Promise<boolean> {
  return (await loadLibc()) !== null;
}

async function loadLibc(): Promise<LoadedLibc | null> {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux") return libc;
  try {
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const int = FFIType.i32;
    const library = dlopen("libc.so.6", {
      setsockopt: { args: [int, int, int, FFIType.ptr, FFIType.u32], returns: int },
      getsockopt: { args: [int, int, int, FFIType.ptr, FFIType.ptr], returns: int },
      getsockname: { args: [int, FFIType.ptr, FFIType.ptr], returns: int },
    });
    // FFI pointers are plain numbers at run time; bun:ffi types them as a branded number.
    libc = { calls: library.symbols as unknown as Libc, ptr: (view) => ptr(view as DataView) as unknown as number };
  } catch {
    libc = null;
  }
  return libc;
}

/**
 * The descriptor number the next socket opened will get (the kernel gives the lowest free one), or null: taken just
 * before a listener opens, it lets listenerDescriptor check one descriptor instead of every one.
 */
export function nextDescriptor(): number | null {
  try {
    const fd = openSync("/dev/null", "r");
    closeSync(fd);
    return fd;
  } catch {
    return null;
  }
}

/**
 * The one listening TCP socket on `port` that is not in `known` (Bun.serve does not expose its descriptor); null when
 * there is not exactly one. `likely` (from nextDescriptor) is checked first; failing that, every open descriptor of
 * the process is asked, which blocks the event loop for a time that grows with the connections open.
 */
export function listenerDescriptor(
  port: number,
  known: ReadonlySet<number>,
  likely: number | null = null,
): number | null {
  const c = libc;
  if (c === null || c === undefined) return null;
  if (likely !== null && !known.has(likely) && isListeningOn(c.calls, c.ptr, likely, port)) return likely;
  let names: string[];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    return null;
  }
  const found: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!known.has(fd) && isListeningOn(c.calls, c.ptr, fd, port)) found.push(fd);
  }
  return found.length === 1 ? found[0]! : null;
}

function isListeningOn(calls: Libc, ptr: (view: ArrayBufferView) => number, fd: number, port: number): boolean {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (calls.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, ptr(value), ptr(length)) !== 0 || value[0] !== 1) return false;
  const address = new Uint8Array(128);
  const addressLength = new Uint32Array([128]);
  if (calls.getsockname(fd, ptr(address), ptr(addressLength)) !== 0) return false;
  // sockaddr_in and sockaddr_in6 both keep the port, big-endian, at bytes 2-3.
  return ((address[2]! << 8) | address[3]!) === port;
}

/** Sends every new connection on the port of `fd`'s reuseport group to the socket at `index` (join order). */
export function steerNewConnections(fd: number, index: number): boolean {
  const c = libc;
  if (c === null || c === undefined) return false;
  const filter = new DataView(new ArrayBuffer(8)); // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
  filter.setUint16(0, BPF_RET_K, true);
  filter.setUint32(4, index, true);
  const program = new DataView(new ArrayBuffer(16)); // struct sock_fprog { u16 len; struct sock_filter *filter; }
  program.setUint16(0, 1, true);
  program.setBigUint64(8, BigInt(c.ptr(filter)), true);
  return c.calls.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, c.ptr(program), 16) === 0;
}

/** Removes the steering program: new connections are shared by hash again. */
export function stopSteering(fd: number): void {
  const c = libc;
  if (c === null || c === undefined) return;
  const unused = new Int32Array(1);
  c.calls.setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, c.ptr(unused), 4);
}

/** Connections accepted by the kernel and not yet by the process on listening socket `fd`; -1 when unknown. */
export function acceptQueueLength(fd: number): number {
  const c = libc;
  if (c === null || c === undefined) return -1;
  const info = new Uint8Array(TCP_INFO_BYTES);
  const length = new Uint32Array([TCP_INFO_BYTES]);
  if (c.calls.getsockopt(fd, IPPROTO_TCP, TCP_INFO, c.ptr(info), c.ptr(length)) !== 0) return -1;
  return new DataView(info.buffer).getUint32(TCPI_UNACKED_OFFSET, true);
}
