// Bun socket callbacks of the load engine: each event goes to its connection's engine; over TLS a connection opens
// when its handshake is done.
import type { SocketHandler } from "bun";
import type { LoadConnection } from "./connection.ts";
import type { LoadEngine } from "./engine.ts";

/** A connection of the load engine (src/client/connection.ts), owned by its engine. */
export type EngineConnection = LoadConnection<LoadEngine>;

export const HANDLERS: SocketHandler<EngineConnection> = {
  binaryType: "buffer",
  open(socket) {
    socket.data.engine.onOpen(socket.data, socket);
  },
  data(socket, chunk) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onData(connection, chunk as Buffer);
  },
  drain(socket) {
    if (socket.data.socket === socket) socket.data.drain();
  },
  close(socket) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onClose(connection);
  },
  end(socket) {
    // the peer sent FIN: treat as a close (our side closes too)
    socket.end();
  },
  error(socket) {
    const connection = socket.data;
    if (connection.socket === socket) connection.engine.onClose(connection);
  },
  connectError(socket, error) {
    socket.data.engine.onConnectError(socket.data, error);
  },
};

/**
 * https:// targets: a TLS client socket takes no application bytes before its handshake, so a connection counts as
 * open once the handshake is done (and its certificate verified, unless --insecure); a failed one is a connect error.
 */
export const TLS_HANDLERS: SocketHandler<EngineConnection> = {
  ...HANDLERS,
  open() {},
  handshake(socket, success, authorizationError) {
    const connection = socket.data;
    const verify = connection.engine.verifiesCertificates;
    if (success && (authorizationError === null || !verify)) {
      connection.engine.onOpen(connection, socket);
      return;
    }
    connection.engine.onConnectError(connection, authorizationError ?? new Error("TLS handshake failed"));
    socket.terminate();
  },
};
