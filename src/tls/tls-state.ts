// The TLS a server runs with: the [tls] settings and the certificates read for them, loaded at start and on reload.
import type { TLSOptions } from "bun";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { describeCertificate } from "./certificate-pair.ts";
import { certificatesOf, loadCertificateSet, type CertificateSet, type TlsSettings } from "./certificate-set.ts";
import { tlsOptionsFor } from "./listener-options.ts";

/**
 * Plain data (it is posted to I/O threads as it is): listeners build their Bun options from it with tlsOptions().
 * A reload makes a new state; listeners compare it with theirs (sameTls) to know whether to rotate.
 */
export interface TlsState {
  readonly settings: TlsSettings;
  readonly certificates: CertificateSet;
}

/** Reads the certificates [tls] names (tls.enabled), or null when TLS is off. Throws CertificateSetError. */
export async function loadTlsState(config: Config, nowMs = Date.now()): Promise<TlsState | null> {
  if (!config.tls.enabled) return null;
  return { settings: config.tls, certificates: await loadCertificateSet(config.tls, nowMs) };
}

/** Bun's TLS options for a listener of this state. */
export function tlsOptions(state: TlsState): TLSOptions[] {
  return tlsOptionsFor(state.certificates, state.settings);
}

/** Whether two states give listeners the same options (same settings, same certificate and key text). */
export function sameTls(a: TlsState | null, b: TlsState | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return JSON.stringify(tlsOptions(a)) === JSON.stringify(tlsOptions(b));
}

/** Logs each certificate (subject, names, expiry) and every warning. */
export function logCertificates(logger: Logger, state: TlsState, nowMs = Date.now()): void {
  for (const { serverName, pair } of certificatesOf(state.certificates)) {
    const which = serverName === "" ? "default certificate" : `certificate for ${serverName}`;
    logger.info(`tls: ${which} (${pair.source.certFile}): ${describeCertificate(pair.summary, nowMs)}`);
  }
  for (const warning of state.certificates.warnings) logger.warn(`tls: ${warning}`);
}

/** The expiry gauge group: server name ("*" for the default certificate) -> notAfter, Unix seconds. */
export function expiryGauges(state: TlsState | null): Record<string, number> {
  const gauges: Record<string, number> = {};
  if (state === null) return gauges;
  for (const { serverName, pair } of certificatesOf(state.certificates)) {
    gauges[serverName === "" ? "*" : serverName] = Math.floor(pair.summary.notAfterMs / 1000);
  }
  return gauges;
}
