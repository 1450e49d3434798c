// One certificate chain and its private key, read from PEM files and checked before any listener uses them.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import { CERTIFICATE_LABEL, ENCRYPTED_KEY_LABEL, KEY_LABELS, pemBlocks, unfinishedBlock } from "./pem.ts";

/** What a certificate says about itself, for logs, /metrics and the dashboard. */
export interface CertificateSummary {
  /** Subject as OpenSSL prints it one-line ("CN=example.com, O=Example"). */
  readonly subject: string;
  readonly issuer: string;
  /** subjectAltName DNS names and IP addresses, in certificate order. */
  readonly names: readonly string[];
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly serial: string;
  readonly fingerprint256: string;
  /** Certificates in the file (the leaf plus intermediates). */
  readonly chainLength: number;
}

/** Where a pair comes from: the setting names used in messages and the two files. */
export interface PairSource {
  /** "tls" for the default pair, "tls.certificates[2]" for an SNI entry: messages say `${setting}.cert_file`. */
  readonly setting: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** A checked pair: the PEM text exactly as read (what the listener is given), its summary and anything worth a warning. */
export interface CertificatePair {
  readonly source: PairSource;
  readonly certPem: string;
  readonly keyPem: string;
  readonly summary: CertificateSummary;
  /** Problems that do not stop a server (chain order, soon expiry); logged at start and reload. */
  readonly warnings: readonly string[];
}

/** A certificate or key that cannot be used; the message names the setting, the file and the fix. */
export class CertificateError extends Error {
  override readonly name = "CertificateError";
}

/** A leaf expiring sooner than this is worth a warning at start and reload. */
const EXPIRY_WARNING_MS = 14 * 86_400_000;

/**
 * Reads and checks a pair: both files readable; the certificate file a PEM chain whose certificates all parse; the key
 * file one unencrypted private key that matches the first certificate; the first certificate valid at `nowMs`; and the
 * TLS library the listeners use takes the pair (a key type it cannot serve, such as DSA, would otherwise only fail when
 * a listener opens). Throws CertificateError naming the file at the first problem.
 */
export async function loadCertificatePair(source: PairSource, nowMs = Date.now()): Promise<CertificatePair> {
  const certSetting = `${source.setting}.cert_file "${source.certFile}"`;
  const keySetting = `${source.setting}.key_file "${source.keyFile}"`;
  const certPem = await readPemFile(source.certFile, certSetting);
  const keyPem = await readPemFile(source.keyFile, keySetting);
  const chain = parseChain(certPem, certSetting);
  const key = parseKey(keyPem, keySetting);
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(key)) {
    throw new CertificateError(
      `${keySetting} does not match the certificate in ${certSetting} (${leaf.subject}): give the key the certificate was issued for`,
    );
  }
  const summary = summarize(chain);
  if (nowMs < summary.notBeforeMs) {
    throw new CertificateError(
      `${certSetting}: the certificate (${summary.subject}) is not valid until ${isoDate(summary.notBeforeMs)}: check the clock or use a current certificate`,
    );
  }
  if (nowMs >= summary.notAfterMs) {
    throw new CertificateError(
      `${certSetting}: the certificate (${summary.subject}) expired on ${isoDate(summary.notAfterMs)}: renew it`,
    );
  }
  try {
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (error) {
    throw new CertificateError(
      `${certSetting} with ${keySetting} cannot be served: the TLS library refuses them (${(error as Error).message})`,
    );
  }
  return { source, certPem, keyPem, summary, warnings: chainWarnings(chain, certSetting, nowMs) };
}

/**
 * The text of a PEM file named by `setting` ("tls.cert_file \"path\""): readable, not empty, no block left unfinished
 * (which the TLS library refuses, or in a CA file silently drops).
 */
export async function readPemFile(path: string, setting: string): Promise<string> {
  if (path === "") throw new CertificateError(`${setting.replace(/ ""$/, "")} is empty: name a PEM file`);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES"
          ? "permission denied (the server's user must be able to read it)"
          : code === "EISDIR"
            ? "is a directory"
            : (error as Error).message;
    throw new CertificateError(`${setting} cannot be read: ${reason}`);
  }
  if (text.trim() === "") throw new CertificateError(`${setting} is empty`);
  const unfinished = unfinishedBlock(text);
  if (unfinished !== null) {
    throw new CertificateError(
      `${setting} holds a PEM block that never ends (a "-----BEGIN ${unfinished}-----" line without its END line): the file looks cut short; was it read while being written?`,
    );
  }
  return text;
}

function parseChain(pem: string, setting: string): X509Certificate[] {
  const blocks = pemBlocks(pem);
  const certificates = blocks.filter((block) => block.label === CERTIFICATE_LABEL);
  if (certificates.length === 0) {
    const looksLikeKey = blocks.some((block) => KEY_LABELS.has(block.label) || block.label === ENCRYPTED_KEY_LABEL);
    throw new CertificateError(
      looksLikeKey
        ? `${setting} holds a private key, not a certificate: are cert_file and key_file swapped?`
        : `${setting} holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`,
    );
  }
  return certificates.map((block, index) => {
    try {
      return new X509Certificate(block.text);
    } catch (error) {
      const which =
        certificates.length === 1 ? "the certificate" : `certificate ${index + 1} of ${certificates.length}`;
      throw new CertificateError(`${setting}: ${which} cannot be parsed (${(error as Error).message})`);
    }
  });
}

function parseKey(pem: string, setting: string): KeyObject {
  const blocks = pemBlocks(pem);
  if (blocks.some((block) => block.label === ENCRYPTED_KEY_LABEL) || /Proc-Type:\s*4,ENCRYPTED/.test(pem)) {
    throw new CertificateError(
      `${setting} is encrypted with a passphrase, which hps does not take: decrypt it (openssl pkey -in KEY -out PLAIN) and protect the file's permissions instead`,
    );
  }
  const keys = blocks.filter((block) => KEY_LABELS.has(block.label));
  if (keys.length === 0) {
    const looksLikeCertificate = blocks.some((block) => block.label === CERTIFICATE_LABEL);
    throw new CertificateError(
      looksLikeCertificate
        ? `${setting} holds a certificate, not a private key: are cert_file and key_file swapped?`
        : `${setting} holds no PEM private key (a "-----BEGIN PRIVATE KEY-----" block)`,
    );
  }
  if (keys.length > 1) throw new CertificateError(`${setting} holds ${keys.length} private keys; give it exactly one`);
  try {
    return createPrivateKey(keys[0]!.text);
  } catch (error) {
    throw new CertificateError(`${setting}: the private key cannot be parsed (${(error as Error).message})`);
  }
}

/** The leaf's summary (names from subjectAltName; chainLength counts every certificate in the file). */
export function summarize(chain: readonly X509Certificate[]): CertificateSummary {
  const leaf = chain[0]!;
  return {
    subject: oneLine(leaf.subject),
    issuer: oneLine(leaf.issuer),
    names: alternativeNames(leaf.subjectAltName),
    notBeforeMs: Date.parse(leaf.validFrom),
    notAfterMs: Date.parse(leaf.validTo),
    serial: leaf.serialNumber.toUpperCase(),
    fingerprint256: leaf.fingerprint256,
    chainLength: chain.length,
  };
}

/** "DNS:a.example, IP Address:127.0.0.1" -> ["a.example", "127.0.0.1"] (other kinds, e.g. email, are left out). */
function alternativeNames(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  const names: string[] = [];
  for (const entry of subjectAltName.split(/,\s*/)) {
    const match = /^(DNS|IP Address):(.+)$/.exec(entry.trim());
    if (match !== null) names.push(match[2]!);
  }
  return names;
}

/** X509Certificate prints multi-valued names one attribute a line. */
function oneLine(name: string): string {
  return name.split("\n").filter(Boolean).join(", ");
}

/** Problems in the chain that a client may or may not mind: order, expired intermediates, an expiry close ahead. */
function chainWarnings(chain: readonly X509Certificate[], setting: string, nowMs: number): string[] {
  const warnings: string[] = [];
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!)) {
      warnings.push(
        `${setting}: certificate ${i + 2} (${oneLine(chain[i + 1]!.subject)}) did not issue certificate ${i + 1} (${oneLine(chain[i]!.subject)}): the chain is out of order or mixed; clients may fail to verify it`,
      );
    }
  }
  for (let i = 1; i < chain.length; i++) {
    const notAfterMs = Date.parse(chain[i]!.validTo);
    if (nowMs >= notAfterMs) {
      warnings.push(
        `${setting}: certificate ${i + 1} of the chain (${oneLine(chain[i]!.subject)}) expired on ${isoDate(notAfterMs)}`,
      );
    }
  }
  const leafNotAfterMs = Date.parse(chain[0]!.validTo);
  if (leafNotAfterMs - nowMs < EXPIRY_WARNING_MS) {
    warnings.push(
      `${setting}: the certificate expires on ${isoDate(leafNotAfterMs)}, in ${daysLeft(leafNotAfterMs, nowMs)}`,
    );
  }
  return warnings;
}

function daysLeft(notAfterMs: number, nowMs: number): string {
  const days = (notAfterMs - nowMs) / 86_400_000;
  return days >= 1 ? `${Math.floor(days)} day${Math.floor(days) === 1 ? "" : "s"}` : "less than a day";
}

/** 2027-03-01T12:00:00Z (seconds, UTC). */
export function isoDate(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

/** The summary as one log line: subject, names, issuer, expiry. */
export function describeCertificate(summary: CertificateSummary, nowMs = Date.now()): string {
  const names = summary.names.length > 0 ? summary.names.join(", ") : "none";
  const days = Math.floor((summary.notAfterMs - nowMs) / 86_400_000);
  return `${summary.subject}; names: ${names}; issuer: ${summary.issuer}; expires ${isoDate(summary.notAfterMs)} (${days} days); serial ${summary.serial}`;
}
