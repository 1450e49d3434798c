// Echo protocol: every chunk read is written back as is, in order; what the kernel does not take waits in the write queue.
import { Counter, type Stats } from "../stats/stats.ts";
import type { ConnectionState, TcpSocket } from "./connection.ts";
import type { WriteQueue } from "./write-queue.ts";

/** The listener's idle clock: a tick counter advanced by the idle sweep, read on every event instead of a system clock. */
export interface IdleClock {
  tick: number;
}

/**
 * Builds the `data` handler of an echo listener (once per listener). `readProxyHeader` takes the chunks of a
 * connection still owing its PROXY header and returns the application bytes after it (empty while none, or
 * when the connection was closed); those are stable views too.
 */
export function createEchoDataHandler(
  stats: Stats,
  writer: WriteQueue,
  clock: IdleClock,
  afterActivity: (connection: ConnectionState) => void,
  readProxyHeader: (connection: ConnectionState, chunk: Uint8Array) => Uint8Array,
): (socket: TcpSocket, chunk: Uint8Array) => void {
  return (socket, chunk) => {
    const connection = socket.data;
    if (connection === undefined) return;
    connection.lastActiveTick = clock.tick;
    stats.add(Counter.bytesRead, chunk.length);
    // Past the shutdown deadline input is only read to be dropped (see ConnectionState.isLingering).
    if (connection.isLingering) return;
    let bytes = chunk;
    if (connection.proxyReader !== null) {
      bytes = readProxyHeader(connection, chunk);
      if (bytes.length === 0) return;
    }
    // A data chunk is a fresh buffer per event that nothing else writes to, so a queued remainder can be a view of it.
    writer.send(connection, bytes, true);
    if (connection.closeWhenIdle) afterActivity(connection);
  };
}
