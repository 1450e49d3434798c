// Bun's TLS options for a listener, built from a checked CertificateSet and the [tls] settings.
import { constants } from "node:crypto";
import type { TLSOptions } from "bun";
import type { CertificateSet, TlsSettings } from "./certificate-set.ts";

/**
 * One entry per certificate: the default pair first (no serverName), then one per [[tls.certificates]] entry with its
 * serverName, all with the same protocol settings (Bun gives each SNI name its own context).
 *
 * Client certificates: with rejectUnauthorized ("require") a client that sends none is refused during the handshake by
 * both Bun.serve and Bun.listen. One whose certificate does not verify is refused by Bun.serve, while Bun.listen
 * completes the handshake and reports the error to its handshake handler, which closes the connection
 * (src/tls/handshake.ts; that is also how "request" refuses a bad certificate and serves a client without one).
 */
export function tlsOptionsFor(set: CertificateSet, tls: TlsSettings): TLSOptions[] {
  const common: TLSOptions = {
    secureOptions: secureOptionsFor(tls),
    ...(tls.ciphers === "" ? {} : { ciphers: tls.ciphers }),
    ...(set.clientCa === null
      ? {}
      : {
          ca: set.clientCa,
          requestCert: true,
          rejectUnauthorized: tls.client_auth === "require",
        }),
  };
  return [
    { ...common, cert: set.defaultPair.certPem, key: set.defaultPair.keyPem },
    ...set.named.map(({ serverName, pair }) => ({ ...common, serverName, cert: pair.certPem, key: pair.keyPem })),
  ];
}

/** OpenSSL option bits: no TLS 1.2 when min_version is 1.3 (1.0 and 1.1 are never offered), no tickets when off. */
function secureOptionsFor(tls: TlsSettings): number {
  let options = 0;
  if (tls.min_version === "1.3") options |= constants.SSL_OP_NO_TLSv1_2;
  if (!tls.session_tickets) options |= constants.SSL_OP_NO_TICKET;
  return options;
}
