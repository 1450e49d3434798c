// TLS handshakes on Bun.listen sockets (echo, custom): the client-certificate decision and failures counted by reason.
import type { Config } from "../config/schema.ts";
import { Counter, type CounterName } from "../stats/stats.ts";

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
