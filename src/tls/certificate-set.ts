// The certificates of one configuration: the default pair, the SNI table ([[tls.certificates]]) and the client CAs.
import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import type { Config } from "../config/schema.ts";
import {
  CertificateError,
  isoDate,
  loadCertificatePair,
  readPemFile,
  type CertificatePair,
} from "./certificate-pair.ts";
import { CERTIFICATE_LABEL, pemBlocks } from "./pem.ts";

export type TlsSettings = Config["tls"];

/** A certificate chosen by the server name a client asks for. */
export interface NamedCertificate {
  /** Lower case, as given ("*.example.com" matches one label). */
  readonly serverName: string;
  readonly pair: CertificatePair;
}

/** Everything a TLS listener needs from the files, checked and read once (listeners get this text, never the paths). */
export interface CertificateSet {
  /** Served when no named entry matches the client's server name (or it sends none). */
  readonly defaultPair: CertificatePair;
  readonly named: readonly NamedCertificate[];
  /** PEM text of tls.ca_file when client certificates are asked for; null otherwise. */
  readonly clientCa: string | null;
  /** Problems worth logging that do not stop the server (chain order, soon expiry, a name the certificate lacks). */
  readonly warnings: readonly string[];
}

/** Every problem with the configured files, each naming its setting and file. */
export class CertificateSetError extends Error {
  override readonly name = "CertificateSetError";
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join("; "));
    this.problems = problems;
  }
}

/**
 * Reads and checks every file [tls] names (see loadCertificatePair for the checks on each pair; ca_file must hold
 * certificates that parse). Throws CertificateSetError listing every problem found, so one start-up or reload
 * reports all of them.
 */
export async function loadCertificateSet(tls: TlsSettings, nowMs = Date.now()): Promise<CertificateSet> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const attempt = async <T>(load: () => Promise<T>): Promise<T | null> => {
    try {
      return await load();
    } catch (error) {
      if (!(error instanceof CertificateError)) throw error;
      problems.push(error.message);
      return null;
    }
  };
  const defaultPair = await attempt(() =>
    loadCertificatePair({ setting: "tls", certFile: tls.cert_file, keyFile: tls.key_file }, nowMs),
  );
  const named: NamedCertificate[] = [];
  for (const [index, entry] of tls.certificates.entries()) {
    const setting = `tls.certificates[${index}]`;
    const pair = await attempt(() =>
      loadCertificatePair({ setting, certFile: entry.cert_file, keyFile: entry.key_file }, nowMs),
    );
    if (pair === null) continue;
    const serverName = entry.server_name.toLowerCase();
    if (!coversName(pair.certPem, serverName)) {
      warnings.push(
        `${setting}: the certificate in "${entry.cert_file}" (${pair.summary.subject}; names: ${pair.summary.names.join(", ") || "none"}) does not cover server_name "${serverName}": clients asking for that name will reject it`,
      );
    }
    named.push({ serverName, pair });
  }
  const clientCa = tls.client_auth === "none" ? null : await attempt(() => readClientCa(tls.ca_file, nowMs, warnings));
  const ciphers = cipherProblem(tls.ciphers);
  if (ciphers !== null) problems.push(ciphers);
  if (problems.length > 0 || defaultPair === null) throw new CertificateSetError(problems);
  for (const pair of [defaultPair, ...named.map((entry) => entry.pair)]) warnings.push(...pair.warnings);
  return { defaultPair, named, clientCa, warnings };
}

/** Why tls.ciphers cannot be used (BoringSSL matches no suite to it), or null. */
function cipherProblem(ciphers: string): string | null {
  if (ciphers === "") return null;
  try {
    createSecureContext({ ciphers });
    return null;
  } catch (error) {
    return `tls.ciphers "${ciphers}" names no cipher suite this TLS library knows (${(error as Error).message}): use OpenSSL syntax such as ECDHE+AESGCM, or leave it empty`;
  }
}

/** Whether the leaf certificate is valid for `serverName` (a wildcard name is tried with a stand-in label). */
function coversName(certPem: string, serverName: string): boolean {
  const host = serverName.startsWith("*.") ? `hps-sni-check.${serverName.slice(2)}` : serverName;
  return new X509Certificate(certPem).checkHost(host) !== undefined;
}

async function readClientCa(path: string, nowMs: number, warnings: string[]): Promise<string> {
  const setting = `tls.ca_file "${path}"`;
  const text = await readPemFile(path, setting);
  const blocks = pemBlocks(text).filter((block) => block.label === CERTIFICATE_LABEL);
  if (blocks.length === 0) throw new CertificateError(`${setting} holds no PEM certificate`);
  for (const [index, block] of blocks.entries()) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block.text);
    } catch (error) {
      throw new CertificateError(`${setting}: certificate ${index + 1} cannot be parsed (${(error as Error).message})`);
    }
    const notAfterMs = Date.parse(certificate.validTo);
    if (nowMs >= notAfterMs) {
      warnings.push(`${setting}: certificate ${index + 1} (${certificate.subject}) expired on ${isoDate(notAfterMs)}`);
    }
    if (!certificate.ca) {
      warnings.push(
        `${setting}: certificate ${index + 1} (${certificate.subject}) is not a CA certificate; client certificates cannot chain to it`,
      );
    }
  }
  return text;
}

/** Each certificate of the set with the name it is served for ("" = the default), for expiry metrics and logs. */
export function certificatesOf(set: CertificateSet): Array<{ serverName: string; pair: CertificatePair }> {
  return [{ serverName: "", pair: set.defaultPair }, ...set.named];
}
