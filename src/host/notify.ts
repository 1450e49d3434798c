// Tells a service manager how start-up, reloads and stopping go: systemd's notify protocol (sd_notify), one datagram
// to the unix socket named by $NOTIFY_SOCKET. `hps upgrade` listens on such a socket too, to learn that the process
// it started is ready.
import { ptr } from "bun:ffi";
import { AF_UNIX, errno, libc, MSG_NOSIGNAL, SOCK_CLOEXEC, SOCK_DGRAM } from "./libc.ts";

/** Bytes in sockaddr_un's sun_path on Linux. */
const SUN_PATH_BYTES = 108;

/**
 * A sockaddr_un for `path` and its length; a leading "@" names an abstract socket (a NUL byte on the wire), as
 * systemd writes them in $NOTIFY_SOCKET. Null when the path is too long.
 */
export function unixSocketAddress(path: string): { address: Uint8Array; length: number } | null {
  const bytes = new TextEncoder().encode(path);
  const isAbstract = bytes[0] === 0x40; // "@"
  if (isAbstract) bytes[0] = 0;
  if (bytes.length > SUN_PATH_BYTES - (isAbstract ? 0 : 1)) return null;
  const address = new Uint8Array(2 + SUN_PATH_BYTES);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(bytes, 2);
  // An abstract name is exactly its bytes; a path is NUL-terminated.
  return { address, length: 2 + bytes.length + (isAbstract ? 0 : 1) };
}

/** Sends `message` as one datagram to the unix socket `path`; returns null or why it could not. */
export function sendDatagram(path: string, message: string): string | null {
  const c = libc();
  if (c === null) return "the C library cannot be loaded on this system";
  const target = unixSocketAddress(path);
  if (target === null) return `socket path too long: ${path}`;
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return `socket() failed (errno ${errno(c)})`;
  try {
    const bytes = new TextEncoder().encode(message);
    const sent = c.sendto(fd, ptr(bytes), bytes.length, MSG_NOSIGNAL, ptr(target.address), target.length);
    return Number(sent) === bytes.length ? null : `sendto ${path} failed (errno ${errno(c)})`;
  } finally {
    c.close(fd);
  }
}

/**
 * Sends `fields` ("READY=1", "STATUS=...", each a line) to $NOTIFY_SOCKET when a service manager set it. Returns
 * false when nobody asked (no variable), true when sent; throws an Error saying why a send failed.
 */
export function notifyServiceManager(fields: readonly string[], env = process.env): boolean {
  const socketPath = env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === "") return false;
  const problem = sendDatagram(socketPath, `${fields.join("\n")}\n`);
  if (problem !== null) throw new Error(`cannot notify the service manager: ${problem}`);
  return true;
}
