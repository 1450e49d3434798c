// Certificate pairs and sets: what is accepted, and the message (naming setting and file) for each kind of bad file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { constants } from "node:crypto";
import { createSecureContext } from "node:tls";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { testConfig } from "../helpers/common.ts";
import { makeTestCa, run, type IssuedCertificate, type TestCa } from "../helpers/tls.ts";
import { CertificateError, describeCertificate, loadCertificatePair } from "../../src/tls/certificate-pair.ts";
import { CertificateSetError, loadCertificateSet, type TlsSettings } from "../../src/tls/certificate-set.ts";
import { tlsOptionsFor } from "../../src/tls/listener-options.ts";

let ca: TestCa;
let good: IssuedCertificate;
let other: IssuedCertificate;

beforeAll(async () => {
  ca = await makeTestCa();
  good = await ca.issue("good", { commonName: "a.test", dnsNames: ["a.test", "www.a.test"], ips: ["127.0.0.1"] });
  other = await ca.issue("other", { commonName: "b.test", dnsNames: ["b.test"] });
});
afterAll(() => ca.remove());

const pair = (certFile: string, keyFile: string) => loadCertificatePair({ setting: "tls", certFile, keyFile });

async function failure(load: Promise<unknown>): Promise<string> {
  try {
    await load;
  } catch (error) {
    expect(error).toBeInstanceOf(CertificateError);
    return (error as Error).message;
  }
  throw new Error("expected the pair to be refused");
}

function tlsSettings(overrides: Partial<TlsSettings>): TlsSettings {
  return testConfig({ tls: { enabled: true, cert_file: good.certFile, key_file: good.keyFile, ...overrides } }).tls;
}

describe("a certificate pair", () => {
  test("a matching, current pair loads with its summary, exactly the text of the files", async () => {
    const loaded = await pair(good.certFile, good.keyFile);
    expect(loaded.certPem).toBe(good.cert);
    expect(loaded.keyPem).toBe(good.key);
    expect(loaded.summary.subject).toBe("CN=a.test");
    expect(loaded.summary.issuer).toBe("CN=hps test CA");
    expect(loaded.summary.names).toEqual(["a.test", "www.a.test", "127.0.0.1"]);
    expect(loaded.summary.serial).toBe(good.serial);
    expect(loaded.summary.chainLength).toBe(1);
    const hoursLeft = (loaded.summary.notAfterMs - Date.now()) / 3_600_000;
    expect(hoursLeft).toBeGreaterThan(23);
    expect(hoursLeft).toBeLessThanOrEqual(24);
    const line = describeCertificate(loaded.summary);
    expect(line).toContain("CN=a.test; names: a.test, www.a.test, 127.0.0.1; issuer: CN=hps test CA; expires ");
    // A day left: worth a warning.
    expect(loaded.warnings.join("\n")).toContain("tls.cert_file");
    expect(loaded.warnings.join("\n")).toContain("in less than a day");
  });

  test("an RSA pair loads too", async () => {
    const rsa = await ca.issue("rsa", { commonName: "rsa.test", dnsNames: ["rsa.test"], keyType: "rsa" });
    expect((await pair(rsa.certFile, rsa.keyFile)).summary.subject).toBe("CN=rsa.test");
  });

  test("a missing file is named with its setting", async () => {
    const missing = join(ca.dir, "nope.pem");
    expect(await failure(pair(missing, good.keyFile))).toBe(`tls.cert_file "${missing}" cannot be read: no such file`);
    expect(await failure(pair(good.certFile, missing))).toBe(`tls.key_file "${missing}" cannot be read: no such file`);
  });

  // Root reads any file, so this can only be seen as another user.
  test.skipIf(process.getuid?.() === 0)("an unreadable file says permission denied", async () => {
    const locked = join(ca.dir, "locked.pem");
    writeFileSync(locked, good.cert);
    chmodSync(locked, 0o000);
    expect(await failure(pair(locked, good.keyFile))).toContain(
      `tls.cert_file "${locked}" cannot be read: permission denied`,
    );
  });

  test("an empty file, a file with no PEM and a garbled certificate are refused", async () => {
    const empty = join(ca.dir, "empty.pem");
    writeFileSync(empty, "\n");
    expect(await failure(pair(empty, good.keyFile))).toBe(`tls.cert_file "${empty}" is empty`);
    const text = join(ca.dir, "text.pem");
    writeFileSync(text, "hello, not a certificate\n");
    expect(await failure(pair(text, good.keyFile))).toBe(
      `tls.cert_file "${text}" holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`,
    );
    const garbled = join(ca.dir, "garbled.pem");
    writeFileSync(
      garbled,
      good.cert.replace(/^(-----BEGIN CERTIFICATE-----\n)(.{40})/, "$1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    expect(await failure(pair(garbled, good.keyFile))).toStartWith(
      `tls.cert_file "${garbled}": the certificate cannot be parsed (`,
    );
    const garbledKey = join(ca.dir, "garbled.key");
    writeFileSync(garbledKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    expect(await failure(pair(good.certFile, garbledKey))).toStartWith(
      `tls.key_file "${garbledKey}": the private key cannot be parsed (`,
    );
  });

  test("swapped files are recognised", async () => {
    expect(await failure(pair(good.keyFile, good.certFile))).toBe(
      `tls.cert_file "${good.keyFile}" holds a private key, not a certificate: are cert_file and key_file swapped?`,
    );
  });

  test("a key that does not match the certificate is refused, naming both files", async () => {
    expect(await failure(pair(good.certFile, other.keyFile))).toBe(
      `tls.key_file "${other.keyFile}" does not match the certificate in tls.cert_file "${good.certFile}" (CN=a.test): give the key the certificate was issued for`,
    );
  });

  test("an expired certificate and one not yet valid are refused with their dates", async () => {
    const expired = await ca.issue("expired", {
      commonName: "old.test",
      notBefore: new Date("2020-01-01T00:00:00Z"),
      notAfter: new Date("2020-02-01T00:00:00Z"),
    });
    expect(await failure(pair(expired.certFile, expired.keyFile))).toBe(
      `tls.cert_file "${expired.certFile}": the certificate (CN=old.test) expired on 2020-02-01T00:00:00Z: renew it`,
    );
    const future = await ca.issue("future", {
      commonName: "new.test",
      notBefore: new Date("2099-01-01T00:00:00Z"),
      notAfter: new Date("2099-02-01T00:00:00Z"),
    });
    expect(await failure(pair(future.certFile, future.keyFile))).toBe(
      `tls.cert_file "${future.certFile}": the certificate (CN=new.test) is not valid until 2099-01-01T00:00:00Z: check the clock or use a current certificate`,
    );
  });

  test("a key encrypted with a passphrase is refused with how to decrypt it", async () => {
    const encrypted = join(ca.dir, "encrypted.key");
    await run(["openssl", "pkey", "-in", good.keyFile, "-aes256", "-passout", "pass:secret", "-out", encrypted]);
    expect(await failure(pair(good.certFile, encrypted))).toStartWith(
      `tls.key_file "${encrypted}" is encrypted with a passphrase, which hps does not take`,
    );
  });

  test("a chain cut short (a block without its END line, as when read while being written) is refused", async () => {
    // The TLS library refuses such a file when the listener opens (BAD_END_LINE), so the check must refuse it first.
    const cut = join(ca.dir, "cut.pem");
    writeFileSync(cut, good.cert + ca.cert.slice(0, 120));
    expect(() => createSecureContext({ cert: readFileSync(cut, "utf8"), key: good.key })).toThrow("BAD_END_LINE");
    expect(await failure(pair(cut, good.keyFile))).toBe(
      `tls.cert_file "${cut}" holds a PEM block that never ends (a "-----BEGIN CERTIFICATE-----" line without its END line): the file looks cut short; was it read while being written?`,
    );
    const cutKey = join(ca.dir, "cut.key");
    writeFileSync(cutKey, good.key + good.key.slice(0, 60));
    expect(await failure(pair(good.certFile, cutKey))).toStartWith(
      `tls.key_file "${cutKey}" holds a PEM block that never ends (a "-----BEGIN PRIVATE KEY-----" line without its END line)`,
    );
  });

  test("a pair the TLS library cannot serve (a DSA key) is refused naming both files", async () => {
    const params = join(ca.dir, "dsa.params");
    const dsaKey = join(ca.dir, "dsa.key");
    const dsaCert = join(ca.dir, "dsa.pem");
    await run([
      "openssl",
      "genpkey",
      "-genparam",
      "-algorithm",
      "DSA",
      "-pkeyopt",
      "dsa_paramgen_bits:1024",
      "-out",
      params,
    ]);
    await run(["openssl", "genpkey", "-paramfile", params, "-out", dsaKey]);
    await run(["openssl", "req", "-x509", "-key", dsaKey, "-out", dsaCert, "-days", "1", "-subj", "/CN=dsa.test"]);
    expect(await failure(pair(dsaCert, dsaKey))).toStartWith(
      `tls.cert_file "${dsaCert}" with tls.key_file "${dsaKey}" cannot be served: the TLS library refuses them (`,
    );
  });

  test("a chain in order loads quietly; out of order it loads with a warning", async () => {
    const intermediate = await ca.issue("intermediate", {
      commonName: "hps test intermediate",
      isCa: true,
      notAfter: new Date(Date.now() + 30 * 86_400_000),
    });
    const leaf = await ca.issue("leaf", {
      commonName: "c.test",
      dnsNames: ["c.test"],
      issuer: intermediate,
      notAfter: new Date(Date.now() + 20 * 86_400_000),
    });
    const chained = join(ca.dir, "chained.pem");
    writeFileSync(chained, leaf.cert + intermediate.cert);
    const loaded = await pair(chained, leaf.keyFile);
    expect(loaded.summary.chainLength).toBe(2);
    expect(loaded.warnings).toEqual([]);
    const reversed = join(ca.dir, "reversed.pem");
    writeFileSync(reversed, leaf.cert + ca.cert + intermediate.cert);
    const warned = await pair(reversed, leaf.keyFile);
    expect(warned.warnings).toEqual([
      `tls.cert_file "${reversed}": certificate 2 (CN=hps test CA) did not issue certificate 1 (CN=c.test): the chain is out of order or mixed; clients may fail to verify it`,
      `tls.cert_file "${reversed}": certificate 3 (CN=hps test intermediate) did not issue certificate 2 (CN=hps test CA): the chain is out of order or mixed; clients may fail to verify it`,
    ]);
  });
});

describe("a certificate set", () => {
  test("the default pair and the SNI entries, with names lower-cased", async () => {
    const set = await loadCertificateSet(
      tlsSettings({ certificates: [{ server_name: "B.test", cert_file: other.certFile, key_file: other.keyFile }] }),
    );
    expect(set.defaultPair.summary.subject).toBe("CN=a.test");
    expect(set.named.map((entry) => [entry.serverName, entry.pair.summary.subject])).toEqual([["b.test", "CN=b.test"]]);
    expect(set.clientCa).toBeNull();
  });

  test("every broken file is reported at once", async () => {
    const missing = join(ca.dir, "missing.pem");
    let problems: readonly string[] = [];
    try {
      await loadCertificateSet(
        tlsSettings({
          key_file: other.keyFile,
          certificates: [
            { server_name: "b.test", cert_file: other.certFile, key_file: other.keyFile },
            { server_name: "c.test", cert_file: missing, key_file: other.keyFile },
          ],
        }),
      );
    } catch (error) {
      expect(error).toBeInstanceOf(CertificateSetError);
      problems = (error as CertificateSetError).problems;
    }
    expect(problems).toEqual([
      `tls.key_file "${other.keyFile}" does not match the certificate in tls.cert_file "${good.certFile}" (CN=a.test): give the key the certificate was issued for`,
      `tls.certificates[1].cert_file "${missing}" cannot be read: no such file`,
    ]);
  });

  test("a server name the certificate does not cover is a warning; a wildcard name is checked by one label", async () => {
    const wildcard = await ca.issue("wildcard", { commonName: "*.w.test", dnsNames: ["*.w.test"] });
    const set = await loadCertificateSet(
      tlsSettings({
        certificates: [
          { server_name: "x.test", cert_file: other.certFile, key_file: other.keyFile },
          { server_name: "*.w.test", cert_file: wildcard.certFile, key_file: wildcard.keyFile },
        ],
      }),
    );
    const coverage = set.warnings.filter((warning) => warning.includes("does not cover"));
    expect(coverage).toEqual([
      `tls.certificates[0]: the certificate in "${other.certFile}" (CN=b.test; names: b.test) does not cover server_name "x.test": clients asking for that name will reject it`,
    ]);
  });

  test("client CAs are read when client certificates are asked for, and must hold certificates", async () => {
    const set = await loadCertificateSet(tlsSettings({ client_auth: "require", ca_file: ca.certFile }));
    expect(set.clientCa).toBe(ca.cert);
    let message = "";
    try {
      await loadCertificateSet(tlsSettings({ client_auth: "require", ca_file: good.keyFile }));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(`tls.ca_file "${good.keyFile}" holds no PEM certificate`);
    // Cut short, the TLS library would silently drop the unfinished CA and refuse the clients it signed.
    const cutCa = join(ca.dir, "cut-ca.pem");
    writeFileSync(cutCa, good.cert + ca.cert.slice(0, 120));
    try {
      await loadCertificateSet(tlsSettings({ client_auth: "require", ca_file: cutCa }));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toStartWith(`tls.ca_file "${cutCa}" holds a PEM block that never ends`);
    // A leaf certificate given as a CA: clients cannot chain to it.
    const leafAsCa = await loadCertificateSet(tlsSettings({ client_auth: "require", ca_file: good.certFile }));
    expect(leafAsCa.warnings.join("\n")).toContain("is not a CA certificate");
  });
});

test("a cipher list that matches nothing is a problem of the set, named", async () => {
  let problems: readonly string[] = [];
  try {
    await loadCertificateSet(tlsSettings({ ciphers: "NOT-A-CIPHER" }));
  } catch (error) {
    problems = (error as CertificateSetError).problems;
  }
  expect(problems).toHaveLength(1);
  expect(problems[0]).toStartWith('tls.ciphers "NOT-A-CIPHER" names no cipher suite this TLS library knows (');
});

describe("listener options", () => {
  test("one entry per certificate; protocol settings in every entry", async () => {
    const tls = tlsSettings({
      min_version: "1.3",
      session_tickets: false,
      ciphers: "ECDHE+AESGCM",
      client_auth: "require",
      ca_file: ca.certFile,
      certificates: [{ server_name: "b.test", cert_file: other.certFile, key_file: other.keyFile }],
    });
    const options = tlsOptionsFor(await loadCertificateSet(tls), tls);
    expect(options).toHaveLength(2);
    expect(options[0]!.serverName).toBeUndefined();
    expect(options[0]!.cert).toBe(good.cert);
    expect(options[1]!.serverName).toBe("b.test");
    expect(options[1]!.key).toBe(other.key);
    for (const entry of options) {
      expect(entry.secureOptions).toBe(constants.SSL_OP_NO_TLSv1_2 | constants.SSL_OP_NO_TICKET);
      expect(entry.ciphers).toBe("ECDHE+AESGCM");
      expect(entry.ca).toBe(ca.cert);
      expect(entry.requestCert).toBe(true);
      expect(entry.rejectUnauthorized).toBe(true);
    }
    const plain = tlsSettings({});
    const [defaults] = tlsOptionsFor(await loadCertificateSet(plain), plain);
    expect(defaults!.secureOptions).toBe(0);
    expect(defaults!.requestCert).toBeUndefined();
    expect(defaults!.ciphers).toBeUndefined();
  });
});
