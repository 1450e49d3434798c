// Settings of TLS on the public port: [tls].
import { z } from "zod";
import { bool, oneOf, str } from "../kinds.ts";
import type { ReloadRule } from "../reload-rule.ts";
import type { SettingSpec } from "./spec.ts";

/** Read into every TLS listener's contexts: a change (or new files) rotates the listeners (src/tls/rotation.ts). */
const TLS_CERTIFICATES: ReloadRule = { rebuild: ["tls-certificates"] };

/** Certificates, protocol versions, client certificates. */
export const TLS_SETTINGS = {
  enabled: {
    schema: bool(false),
    doc: "Speak TLS on the public port, whatever server.protocol is (HTTPS, echo over TLS, HPS/1 over TLS).",
    reload: "restart",
  },
  cert_file: {
    schema: str(""),
    doc: "PEM file with the certificate, followed by its intermediate certificates (the chain); the default certificate when no tls.certificates entry matches the client's server name.",
    reload: TLS_CERTIFICATES,
  },
  key_file: {
    schema: str(""),
    doc: "PEM file with the unencrypted private key of cert_file.",
    reload: TLS_CERTIFICATES,
  },
  ca_file: {
    schema: str(""),
    doc: "PEM file with the certificate authorities that client certificates must chain to (client_auth).",
    reload: TLS_CERTIFICATES,
  },
  client_auth: {
    schema: oneOf(["none", "request", "require"] as const, "none"),
    doc: "Client certificates (mutual TLS): none; request (ask; a client without one is served, one whose certificate does not verify against ca_file is refused; echo and custom only); require (a client without a certificate that verifies against ca_file is refused).",
    reload: TLS_CERTIFICATES,
  },
  min_version: {
    schema: oneOf(["1.2", "1.3"] as const, "1.2"),
    doc: "Oldest TLS version accepted; older clients are refused during the handshake (TLS 1.0 and 1.1 are never accepted).",
    reload: TLS_CERTIFICATES,
  },
  ciphers: {
    schema: str(""),
    doc: "TLS 1.2 cipher suites in OpenSSL syntax (e.g. ECDHE+AESGCM); empty = Bun's defaults. TLS 1.3 suites are fixed by BoringSSL and always offered.",
    reload: TLS_CERTIFICATES,
  },
  session_tickets: {
    schema: bool(true),
    doc: "Give clients session tickets so they can resume a session without a full handshake.",
    reload: TLS_CERTIFICATES,
  },
  certificates: {
    schema: z
      .array(
        z
          .object({
            server_name: z.string(),
            cert_file: z.string(),
            key_file: z.string(),
          })
          .strict(),
      )
      .default([]),
    doc: "More certificates, chosen by the server name a client asks for (SNI), one [[tls.certificates]] table each with server_name (a host name, or *.example.com for one label), cert_file and key_file; set in the file only.",
    reload: TLS_CERTIFICATES,
    tableList: {
      example: [
        "# [[tls.certificates]]",
        '# server_name = "www.example.com"',
        '# cert_file = "/etc/hps/www.example.com/fullchain.pem"',
        '# key_file = "/etc/hps/www.example.com/privkey.pem"',
      ],
    },
  },
} as const satisfies Record<string, SettingSpec>;
