// TLS handshakes on Bun.listen sockets (echo, custom): the client-certificate decision and failures counted by reason.
import type { Socket } from "bun";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { Counter, type CounterName, type Stats } from "../stats/stats.ts";

/** Why a handshake failed; each reason has its own counter (hps_tls_handshake_failures_total{reason}). */
export const HandshakeFailure = {
  /** The client spoke something other than TLS (plain HTTP, an HPS/1 frame, noise). */
  notTls: Counter.tlsFailedNotTls,
  /** TLS 1.0/1.1, or 1.2 when tls.min_version = "1.3". */
  protocolVersion: Counter.tlsFailedProtocolVersion,
  /** No cipher suite in common (tls.ciphers). */
  noSharedCipher: Counter.tlsFailedNoSharedCipher,
  /** tls.client_auth = "require" and the client sent no certificate. */
  noClientCertificate: Counter.tlsFailedNoClientCertificate,
  /** The client's certificate does not verify against tls.ca_file (unknown CA, expired, self-signed). */
  badClientCertificate: Counter.tlsFailedBadClientCertificate,
  /** The client went away (or stopped halfway) before the handshake finished. */
  closed: Counter.tlsFailedClosed,
  /** The handshake did not finish within the connection's idle timeout. */
  timeout: Counter.tlsFailedTimeout,
  other: Counter.tlsFailedOther,
} as const;

/** The counter slot of a failure reason. */
export type HandshakeFailureCounter = (typeof HandshakeFailure)[keyof typeof HandshakeFailure];

/** Reason labels for /metrics and reports, with the counter each reads, in the order of HandshakeFailure. */
export const HANDSHAKE_FAILURE_LABELS: ReadonlyArray<readonly [string, CounterName]> = [
  ["not_tls", "tlsFailedNotTls"],
  ["protocol_version", "tlsFailedProtocolVersion"],
  ["no_shared_cipher", "tlsFailedNoSharedCipher"],
  ["no_client_certificate", "tlsFailedNoClientCertificate"],
  ["bad_client_certificate", "tlsFailedBadClientCertificate"],
  ["closed", "tlsFailedClosed"],
  ["timeout", "tlsFailedTimeout"],
  ["other", "tlsFailedOther"],
];

/** Error codes and reason strings BoringSSL and Bun report for a failed handshake, by what they mean. */
const FAILURE_PATTERNS: ReadonlyArray<readonly [RegExp, HandshakeFailureCounter]> = [
  [
    /HTTP_REQUEST|HTTPS_PROXY_REQUEST|WRONG_VERSION_NUMBER|UNEXPECTED_RECORD|UNKNOWN_PROTOCOL|RECORD_TOO_LARGE/,
    HandshakeFailure.notTls,
  ],
  [/UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|VERSION_TOO_LOW/, HandshakeFailure.protocolVersion],
  [/NO_SHARED_CIPHER|NO_CIPHERS|HANDSHAKE_FAILURE_ON_CLIENT_HELLO/, HandshakeFailure.noSharedCipher],
  [/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/, HandshakeFailure.noClientCertificate],
  [/disconnected before secure TLS connection|ECONNRESET|EPIPE/, HandshakeFailure.closed],
];

/** Classifies the error Bun hands the handshake handler when `success` is false. */
export function classifyHandshakeError(error: Error | null): HandshakeFailureCounter {
  if (error === null) return HandshakeFailure.other;
  const text = `${(error as NodeJS.ErrnoException).code ?? ""} ${error.message}`;
  for (const [pattern, counter] of FAILURE_PATTERNS) if (pattern.test(text)) return counter;
  return HandshakeFailure.other;
}

/** Client-certificate verdicts of a completed handshake. */
export const ClientCertificate = { ACCEPTED: 0, MISSING: 1, INVALID: 2 } as const;
export type ClientCertificateVerdict = (typeof ClientCertificate)[keyof typeof ClientCertificate];

/**
 * Whether a completed handshake may go on, by tls.client_auth. Bun.listen completes a handshake whose client
 * certificate does not verify and passes the verification error along; with "none" it reports one too (no
 * certificate was asked for), which means nothing. `hasPeerCertificate`: the client sent one.
 */
export function clientCertificateVerdict(
  clientAuth: Config["tls"]["client_auth"],
  authorizationError: Error | null,
  hasPeerCertificate: boolean,
): ClientCertificateVerdict {
  if (clientAuth === "none" || authorizationError === null) return ClientCertificate.ACCEPTED;
  if (!hasPeerCertificate) return clientAuth === "require" ? ClientCertificate.MISSING : ClientCertificate.ACCEPTED;
  return ClientCertificate.INVALID;
}

/** What the handshake handler reads and marks on a connection (the TCP listener's connection state). */
export interface HandshakeConnection {
  isClosed: boolean;
  isHandshaking: boolean;
  readonly remoteAddress: string;
}

/** What the handshake handler needs from the running server (read per handshake: a reload replaces it). */
export interface HandshakeContext {
  readonly config: Config;
  readonly stats: Stats;
  readonly logger: Logger;
}

/**
 * The `handshake` handler of a TLS Bun.listen listener: a failure is counted by reason (Bun closes the socket); a
 * client certificate that tls.client_auth does not accept closes the connection and is counted too; a success is
 * counted as a handshake.
 */
export function createHandshakeHandler<Data extends HandshakeConnection | undefined>(
  current: () => HandshakeContext,
): (socket: Socket<Data>, success: boolean, authorizationError: Error | null) => void {
  return (socket, success, authorizationError) => {
    const connection = socket.data;
    if (connection === undefined || connection.isClosed) return;
    connection.isHandshaking = false;
    const { config, stats, logger } = current();
    if (!success) {
      stats.inc(classifyHandshakeError(authorizationError));
      logger.debug(
        `tls: handshake with ${connection.remoteAddress} failed: ${authorizationError?.message ?? "unknown reason"}`,
      );
      return;
    }
    const hasPeerCertificate = authorizationError !== null && hasCertificate(socket);
    const verdict = clientCertificateVerdict(config.tls.client_auth, authorizationError, hasPeerCertificate);
    if (verdict !== ClientCertificate.ACCEPTED) {
      stats.inc(
        verdict === ClientCertificate.MISSING
          ? HandshakeFailure.noClientCertificate
          : HandshakeFailure.badClientCertificate,
      );
      logger.debug(
        `tls: client certificate of ${connection.remoteAddress} refused: ${authorizationError?.message ?? "none sent"}`,
      );
      connection.isClosed = true;
      socket.end();
      return;
    }
    stats.inc(Counter.tlsHandshakes);
  };
}

/** Whether the client sent a certificate (Bun gives an empty object, or nothing, when it did not). */
function hasCertificate(socket: Socket<unknown>): boolean {
  const certificate = socket.getPeerCertificate() as { raw?: unknown } | undefined | null;
  return certificate !== undefined && certificate !== null && certificate.raw !== undefined;
}
